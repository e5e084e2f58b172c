"use strict";
(function () {
  // Rows: [title, provider, date shown (YYYY-MM-DD of the last update, or ""), messages,
  // href, sort time (Unix seconds or null), folded title], in export order.
  var rows = JSON.parse(document.getElementById("data").textContent);
  // The text index: its folder and the first word of each shard (shard i = <dir>/s<i>.js).
  var shardInfo = JSON.parse(document.getElementById("shards").textContent);
  var q = document.getElementById("q");
  var provider = document.getElementById("provider");
  var from = document.getElementById("from");
  var to = document.getElementById("to");
  var order = document.getElementById("order");
  var list = document.getElementById("list");
  var count = document.getElementById("count");
  var more = document.getElementById("more");
  var PAGE = 500;
  var shown = PAGE;

  // Folding, exactly as search.py's fold(): NFKD, these combining marks removed, lower case.
  var MARKS = /[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f\u3099\u309a]/g;
  var IDEO = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
  var WORD = new RegExp("[" + IDEO + "]|(?:(?![" + IDEO + "])[\\p{L}\\p{N}])+", "gu");
  var ONE_IDEO = new RegExp("^[" + IDEO + "]$", "u");
  var MAX_WORD = 32;
  function fold(s) { return s.normalize("NFKD").replace(MARKS, "").toLowerCase(); }
  function words(s) {
    var out = fold(s).match(WORD) || [];
    return out.map(function (w) { return w.slice(0, MAX_WORD); });
  }
  window.zexportFold = fold;  // for the tests: the same folding as the Python side
  window.zexportWords = words;

  var shards = {};       // shard number -> "word:deltas" lines, once loaded
  var pending = {};      // shard number -> true while its script loads
  var wordHits = {};     // query word -> Uint8Array over rows (1 = a message holds it)

  window.zexportShard = function (n, body) {
    shards[n] = body.split("\n");
    delete pending[n];
    if (!Object.keys(pending).length) update();
  };

  // Shards holding words that start with `word`: shard i holds the words from its first
  // word (firsts[i]) up to the next shard's, in JavaScript's string order.
  function shardsFor(word) {
    var firsts = shardInfo[1];
    var out = [];
    var end = word + "\uffff";
    for (var i = 0; i < firsts.length; i++) {
      if (firsts[i] > end) break;
      if (i + 1 < firsts.length && firsts[i + 1] <= word) continue;
      out.push(i);
    }
    return out;
  }

  function load(n) {
    if (n in shards || pending[n]) return;
    pending[n] = true;
    var s = document.createElement("script");
    s.src = shardInfo[0] + "/s" + n + ".js";
    s.onerror = function () { shards[n] = []; delete pending[n]; update(); };
    document.head.appendChild(s);
  }

  // Rows whose messages hold a word starting with `word`, or null while shards load.
  var NONE = new Uint8Array(0);
  function hits(word) {
    if (wordHits[word]) return wordHits[word];
    // One letter would load every shard of that letter: it searches titles only.
    if (word.length < 2 && !ONE_IDEO.test(word)) return NONE;
    var need = shardsFor(word);
    var missing = need.filter(function (n) { return !(n in shards); });
    if (missing.length) { missing.forEach(load); return null; }
    var bits = new Uint8Array(rows.length);
    need.forEach(function (n) {
      var lines = shards[n];
      for (var i = 0; i < lines.length; i++) {
        var line = lines[i];
        var colon = line.indexOf(":");
        if (line.lastIndexOf(word, 0) !== 0 || colon < word.length) continue;
        var deltas = line.slice(colon + 1).split(",");
        var at = 0;
        for (var d = 0; d < deltas.length; d++) { at += parseInt(deltas[d], 36); bits[at] = 1; }
      }
    });
    wordHits[word] = bits;
    return bits;
  }

  var providers = {};
  rows.forEach(function (r) { providers[r[1]] = true; });
  Object.keys(providers).sort().forEach(function (p) {
    var opt = document.createElement("option");
    opt.value = p;
    opt.textContent = p;
    provider.appendChild(opt);
  });

  // The matching rows in the chosen order, or null while the text index loads.
  function matches() {
    var ws = words(q.value);
    var textHits = [];
    var loading = false;
    for (var w = 0; w < ws.length; w++) {
      var h = hits(ws[w]);
      if (h === null) loading = true;
      textHits.push(h);
    }
    if (loading) return null;
    var p = provider.value, f = from.value, t = to.value;
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (p && r[1] !== p) continue;
      if (f && (!r[2] || r[2] < f)) continue;
      if (t && (!r[2] || r[2] > t)) continue;
      var ok = true;
      for (w = 0; w < ws.length; w++) {
        if (!textHits[w][i] && r[6].indexOf(ws[w]) < 0) { ok = false; break; }
      }
      if (ok) out.push(i);
    }
    if (order.value === "newest" || order.value === "oldest") {
      var sign = order.value === "newest" ? -1 : 1;
      out.sort(function (a, b) {
        var x = rows[a][5], y = rows[b][5];
        if (x === y) return a - b;
        if (x === null) return 1;   // undated last, either way
        if (y === null) return -1;
        return sign * (x - y);
      });
    } else if (order.value === "title") {
      out.sort(function (a, b) {
        var x = rows[a][6], y = rows[b][6];
        return x < y ? -1 : x > y ? 1 : a - b;
      });
    }
    return out;
  }

  function row(r) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.href = r[4];
    a.textContent = r[0] || "Untitled";
    var badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = r[1];
    var when = document.createElement("span");
    when.className = "when";
    when.textContent = (r[2] || "no date") + " \u00b7 " + r[3] + " msg";
    li.appendChild(a);
    li.appendChild(badge);
    li.appendChild(when);
    return li;
  }

  function update() {
    var found = matches();
    if (found === null) {
      count.textContent = "Searching messages\u2026";
      document.body.dataset.state = "loading";
      return;
    }
    var frag = document.createDocumentFragment();
    for (var i = 0; i < found.length && i < shown; i++) frag.appendChild(row(rows[found[i]]));
    list.replaceChildren(frag);
    count.textContent = found.length === rows.length
      ? rows.length + " conversations"
      : found.length + " of " + rows.length + " conversations";
    more.hidden = found.length <= shown;
    document.body.dataset.state = "ready";
  }

  function reset() { shown = PAGE; update(); }
  [q, provider, from, to, order].forEach(function (el) { el.addEventListener("input", reset); });
  more.addEventListener("click", function () { shown += PAGE; update(); });
  update();
})();
