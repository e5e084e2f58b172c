"use strict";
(function () {
  // Rows are [title, provider, date (YYYY-MM-DD or ""), messages, href], in export order.
  var rows = JSON.parse(document.getElementById("data").textContent);
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
  var keys = rows.map(function (r) { return r[0].toLocaleLowerCase(); });

  var providers = {};
  rows.forEach(function (r) { providers[r[1]] = true; });
  Object.keys(providers).sort().forEach(function (p) {
    var opt = document.createElement("option");
    opt.value = p;
    opt.textContent = p;
    provider.appendChild(opt);
  });

  function matches() {
    var words = q.value.toLocaleLowerCase().split(/\s+/).filter(Boolean);
    var p = provider.value, f = from.value, t = to.value;
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (p && r[1] !== p) continue;
      if (f && (!r[2] || r[2] < f)) continue;
      if (t && (!r[2] || r[2] > t)) continue;
      var ok = true;
      for (var w = 0; w < words.length; w++) {
        if (keys[i].indexOf(words[w]) < 0) { ok = false; break; }
      }
      if (ok) out.push(i);
    }
    if (order.value === "newest") out.reverse();
    else if (order.value === "title") {
      out.sort(function (a, b) { return keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : a - b; });
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
    var frag = document.createDocumentFragment();
    for (var i = 0; i < found.length && i < shown; i++) frag.appendChild(row(rows[found[i]]));
    list.replaceChildren(frag);
    count.textContent = found.length === rows.length
      ? rows.length + " conversations"
      : found.length + " of " + rows.length + " conversations";
    more.hidden = found.length <= shown;
  }

  function reset() { shown = PAGE; update(); }
  [q, provider, from, to, order].forEach(function (el) { el.addEventListener("input", reset); });
  more.addEventListener("click", function () { shown += PAGE; update(); });
  update();
})();
