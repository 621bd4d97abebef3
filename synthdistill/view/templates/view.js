(function () {
  'use strict';
  var PAGE = 25;
  var records = JSON.parse(document.getElementById('records-data').textContent);
  var byId = function (id) { return document.getElementById(id); };
  var state = { page: 0, matches: records, open: null };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fillOptions(select, values) {
    values.forEach(function (v) { select.appendChild(el('option', { value: v }, v)); });
  }

  function distinct(key) {
    var seen = {};
    records.forEach(function (r) { if (r[key]) { seen[r[key]] = true; } });
    return Object.keys(seen).sort();
  }

  function promptText(r) {
    var users = r.messages.filter(function (m) { return m.role === 'user'; });
    return (users.length ? users[users.length - 1] : r.messages[r.messages.length - 1] || { content: '' }).content;
  }

  function matches(r) {
    var q = byId('f-search').value.trim().toLowerCase();
    var pack = byId('f-pack').value, status = byId('f-status').value, reason = byId('f-reason').value;
    var min = parseInt(byId('f-min').value, 10), max = parseInt(byId('f-max').value, 10);
    if (pack && r.pack !== pack) { return false; }
    if (status && r.status !== status) { return false; }
    if (reason && r.reason !== reason) { return false; }
    if (!isNaN(min) && r.length < min) { return false; }
    if (!isNaN(max) && r.length > max) { return false; }
    if (q) {
      var hay = (r.text + '\n' + r.messages.map(function (m) { return m.content; }).join('\n')).toLowerCase();
      if (hay.indexOf(q) < 0) { return false; }
    }
    return true;
  }

  function colour(p) {
    if (p === null || p === undefined) { return '#eceff4'; }
    return 'hsl(' + Math.round(120 * p) + ',85%,82%)';
  }

  function histogram(target, values, title, low, high) {
    var bins = 20, counts = new Array(bins).fill(0), width = 540, height = 170, left = 40, bottom = 30, top = 24;
    values.forEach(function (v) {
      var i = Math.floor((v - low) / (high - low) * bins);
      counts[Math.max(0, Math.min(bins - 1, i))] += 1;
    });
    var most = Math.max.apply(null, counts.concat([1]));
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('width', width); svg.setAttribute('height', height);
    svg.setAttribute('class', 'histogram');
    function add(tag, attrs, text) {
      var node = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
      if (text !== undefined) { node.textContent = text; }
      svg.appendChild(node);
      return node;
    }
    add('text', { x: left, y: 14, 'class': 'title' }, title + ' (' + values.length + ' tokens)');
    var barW = (width - left - 10) / bins, plotH = height - top - bottom;
    counts.forEach(function (c, i) {
      var h = plotH * c / most;
      var bar = add('rect', { x: left + i * barW + 1, y: top + plotH - h, width: barW - 2, height: h, fill: '#4f7cd6' });
      var from = low + (high - low) * i / bins, to = low + (high - low) * (i + 1) / bins;
      var tip = document.createElementNS(ns, 'title');
      tip.textContent = from.toFixed(2) + '–' + to.toFixed(2) + ': ' + c;
      bar.appendChild(tip);
    });
    add('text', { x: left, y: height - 10 }, low.toFixed(1));
    add('text', { x: width - 10, y: height - 10, 'text-anchor': 'end' }, high.toFixed(1));
    add('text', { x: left - 4, y: top + 10, 'text-anchor': 'end' }, String(most));
    target.replaceChildren(svg);
  }

  function drawHistograms() {
    var conf = [], ent = [];
    state.matches.forEach(function (r) {
      (r.tokens || []).forEach(function (t) {
        if (t[1] !== null) { conf.push(t[1]); }
        ent.push(t[2]);
      });
    });
    histogram(byId('hist-confidence'), conf, "teacher's probability of the sampled token", 0, 1);
    var top = Math.max.apply(null, ent.concat([1]));
    histogram(byId('hist-entropy'), ent, 'entropy of the top-k distribution (nats)', 0, Math.ceil(top));
  }

  function renderList() {
    var body = byId('record-list').tBodies[0];
    body.replaceChildren();
    var pages = Math.max(1, Math.ceil(state.matches.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    state.matches.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (r) {
      var row = el('tr', { 'data-id': r.id, 'data-status': r.status });
      row.appendChild(el('td', {}, r.pack));
      row.appendChild(el('td', { 'class': 'status-' + r.status }, r.status));
      row.appendChild(el('td', {}, r.reason || ''));
      row.appendChild(el('td', { 'class': 'num' }, r.length + ' ' + r.length_unit));
      row.appendChild(el('td', { 'class': 'num' }, r.confidence === null ? '–' : r.confidence.toFixed(3)));
      row.appendChild(el('td', {}, promptText(r).slice(0, 140)));
      if (state.open === r.id) { row.className = 'open'; }
      row.addEventListener('click', function () { openRecord(r); });
      body.appendChild(row);
    });
    byId('match-count').textContent = state.matches.length + ' of ' + records.length + ' records match';
    byId('page-label').textContent = 'page ' + (state.page + 1) + ' of ' + pages;
    byId('prev').disabled = state.page === 0;
    byId('next').disabled = state.page >= pages - 1;
  }

  function showTip(event, token) {
    var tip = byId('tooltip');
    var lines = ['sampled ' + JSON.stringify(token[0]) + '  p=' + (token[1] === null ? '?' : token[1].toFixed(3)) +
                 '  entropy=' + token[2].toFixed(2)];
    token[3].forEach(function (alt) { lines.push('  ' + JSON.stringify(alt[0]) + '  ' + (alt[1] === null ? '?' : alt[1].toFixed(3))); });
    tip.textContent = lines.join('\n');
    tip.hidden = false;
    tip.style.left = Math.min(event.pageX + 12, document.documentElement.scrollWidth - 320) + 'px';
    tip.style.top = (event.pageY + 14) + 'px';
  }

  function openRecord(r) {
    state.open = r.id;
    var box = byId('record-detail');
    box.replaceChildren();
    box.appendChild(el('h3', {}, r.pack + ' · ' + r.status + (r.reason ? ' · ' + r.reason : '')));
    box.appendChild(el('p', { 'class': 'meta' }, 'request ' + r.id + ' · prompt ' + r.prompt_id + ' · answered as ' +
      (r.model || '?') + ' · finish ' + (r.finish || '?') + ' · ' + r.length + ' ' + r.length_unit));
    if (r.detail) { box.appendChild(el('p', { 'class': 'reason' }, 'dropped: ' + r.detail)); }
    r.messages.forEach(function (m) {
      var p = el('p', { 'class': 'msg' });
      p.appendChild(el('b', {}, m.role + ': '));
      p.appendChild(document.createTextNode(m.content));
      box.appendChild(p);
    });
    if (r.reasoning) {
      var trace = el('details', { 'class': 'reasoning' });
      trace.appendChild(el('summary', {}, "teacher's reasoning (" + r.reasoning.length + ' characters)'));
      trace.appendChild(el('pre', {}, r.reasoning));
      box.appendChild(trace);
    }
    box.appendChild(el('b', {}, 'teacher:'));
    var answer = el('div', { 'class': 'answer', id: 'answer-tokens' });
    if (r.tokens) {
      r.tokens.forEach(function (t) {
        var span = el('span', { 'class': 'tok', 'data-p': t[1] === null ? '' : t[1] }, t[0]);
        span.style.background = colour(t[1]);
        span.addEventListener('mouseenter', function (e) { showTip(e, t); });
        span.addEventListener('mousemove', function (e) { showTip(e, t); });
        span.addEventListener('mouseleave', function () { byId('tooltip').hidden = true; });
        answer.appendChild(span);
      });
    } else {
      answer.textContent = r.text;
      box.appendChild(el('p', { 'class': 'note' }, 'No logprobs were captured for this answer.'));
    }
    box.appendChild(answer);
    box.hidden = false;
    renderList();
    box.scrollIntoView({ block: 'nearest' });
  }

  function update() {
    state.matches = records.filter(matches);
    state.page = 0;
    renderList();
    drawHistograms();
  }

  fillOptions(byId('f-pack'), distinct('pack'));
  fillOptions(byId('f-status'), distinct('status'));
  fillOptions(byId('f-reason'), distinct('reason'));
  ['f-search', 'f-min', 'f-max'].forEach(function (id) { byId(id).addEventListener('input', update); });
  ['f-pack', 'f-status', 'f-reason'].forEach(function (id) { byId(id).addEventListener('change', update); });
  byId('prev').addEventListener('click', function () { state.page -= 1; renderList(); });
  byId('next').addEventListener('click', function () { state.page += 1; renderList(); });
  update();
  document.body.setAttribute('data-view-ready', 'yes');
})();
