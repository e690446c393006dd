// tunebatch gallery: sheet music (abcjs), a playback cursor, filters, favourites and export.
//
// Rules this file keeps (see producer/gallery.py):
// - Tune data is read from the <script type="application/json" id="tune-data"> block with
//   textContent + JSON.parse, and goes into the page with textContent and DOM properties only:
//   never innerHTML, never a string of markup.
// - Nothing is fetched: every file the page uses sits next to index.html, so it works from
//   file:// offline.
// - Lazy at two levels, so a 1,000-tune batch opens as fast as a 20-tune one: cards are built
//   a page at a time as the list scrolls (the static copy of every card is in a <noscript>,
//   which a browser with JavaScript keeps as one text node), and a card's notation and player
//   are made only when it comes near the viewport (IntersectionObserver).
// - Playback is the batch's own rendered audio in the card's <audio>; the cursor follows
//   audio.currentTime through abcjs's note timings (no soundfont download, as abcjs's synth
//   would need), scaled so the notation's length matches the MIDI's.
(function () {
  "use strict";
  performance.mark("gallery:start");

  var PAGE = 24; // cards added to the list at a time
  var BARS_PER_LINE = 6;
  var AUDIO_TYPES = [["ogg", "audio/ogg"], ["mp3", "audio/mpeg"], ["wav", "audio/wav"], ["flac", "audio/flac"]];

  var data = JSON.parse(document.getElementById("tune-data").textContent);
  var tunes = data.tunes;
  var byId = new Map();
  var cards = new Map(); // tune id -> card element, once built
  var drawn = new Map(); // tune id -> abcjs visual object
  var list = document.getElementById("list");
  var sentinel = document.getElementById("more");
  var matching = []; // ids that pass the filters, in the chosen order
  var built = 0; // how many of `matching` are in the list

  tunes.forEach(function (tune, index) {
    tune.index = index;
    byId.set(tune.id, tune);
  });
  var favKey = "tunebatch.favourites." + data.batch_id;
  var favourites = loadFavourites();

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  var ready = false;
  function markReady() {
    if (ready) return;
    ready = true;
    window.__galleryReadyMs = performance.now();
    document.documentElement.dataset.ready = "1";
  }

  // --- favourites ---------------------------------------------------------------------------
  function loadFavourites() {
    try {
      var saved = JSON.parse(window.localStorage.getItem(favKey) || "[]");
      return new Set(Array.isArray(saved) ? saved.filter(function (id) { return byId.has(id); }) : []);
    } catch (e) {
      return new Set();
    }
  }

  function saveFavourites() {
    try {
      window.localStorage.setItem(favKey, JSON.stringify(Array.from(favourites).sort()));
    } catch (e) {
      // Storage off (private mode, quota): favourites last as long as the page.
    }
  }

  function showStar(star, id) {
    var on = favourites.has(id);
    star.textContent = on ? "★" : "☆";
    star.setAttribute("aria-pressed", on ? "true" : "false");
    star.setAttribute("aria-label", (on ? "Unmark " : "Mark ") + byId.get(id).title + " as favourite");
  }

  function renumber(abc, number) {
    // The same text as producer/tunebook.py: first X: line set to the number, or one added.
    var text = abc.trim().replace(/\r\n/g, "\n");
    return /^X:.*$/m.test(text) ? text.replace(/^X:.*$/m, "X:" + number) : "X:" + number + "\n" + text;
  }

  function exportTunebook(ids) {
    var chosen = ids.filter(function (id) { return byId.get(id).abc; });
    var body = chosen.map(function (id, i) { return renumber(byId.get(id).abc, i + 1); }).join("\n\n");
    return "%abc-2.1\n% tunebatch batch " + data.batch_id + ": " + chosen.join(" ") + "\n\n" + body + "\n";
  }

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var link = el("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // --- cards --------------------------------------------------------------------------------
  function buildCard(tune) {
    var card = el("article", "tune");
    card.id = tune.id;
    card.dataset.tune = tune.id;
    var star = el("button", "favourite");
    star.type = "button";
    star.dataset.action = "favourite";
    showStar(star, tune.id);
    card.appendChild(star);
    card.appendChild(el("h2", "title", tune.title));
    var facts = el("dl", "facts");
    tune.facts.forEach(function (fact) {
      var row = el("div", "fact-" + fact[0]);
      row.appendChild(el("dt", "", fact[1]));
      row.appendChild(el("dd", "", fact[2]));
      facts.appendChild(row);
    });
    card.appendChild(facts);
    card.appendChild(el("div", "notation"));
    var downloads = el("p", "downloads", "Download: ");
    Object.keys(tune.files).sort().forEach(function (format) {
      var link = el("a", "", format);
      link.href = tune.files[format];
      link.setAttribute("download", "");
      downloads.appendChild(link);
      downloads.appendChild(document.createTextNode(" "));
    });
    card.appendChild(downloads);
    return card;
  }

  // The ABC as drawn: a music line longer than a dozen bars is broken every BARS_PER_LINE bars
  // (a line break in ABC is layout only), so it is not drawn too small to read. Cheaper than
  // abcjs's own `wrap`, which lays the tune out twice.
  function displayAbc(abc) {
    return abc.split("\n").map(function (line) {
      if (/^\s*(%|[A-Za-z]:)/.test(line) || (line.match(/\|+/g) || []).length <= 12) return line;
      var count = 0;
      return line.replace(/::|:*\|+[:\]]*/g, function (bar) {
        count++;
        return count % BARS_PER_LINE === 0 ? bar + "\n" : bar;
      });
    }).join("\n");
  }

  function draw(id) {
    if (drawn.has(id)) return drawn.get(id);
    var tune = byId.get(id);
    var card = cards.get(id);
    if (!tune.abc || !card || !window.ABCJS) return null;
    var target = el("div", "score");
    card.querySelector(".notation").appendChild(target);
    var visual = window.ABCJS.renderAbc(target, displayAbc(tune.abc), { add_classes: true, responsive: "resize" })[0];
    drawn.set(id, visual || null);
    card.classList.add("drawn");
    return visual || null;
  }

  // A card gets its notation and player once, when it first comes within a screen or so of the
  // viewport. One card is filled in per task, those in view first, so the page answers input
  // between cards and never blocks for long.
  var filled = new Set();
  function fill(id) {
    if (filled.has(id) || !cards.has(id)) return;
    filled.add(id);
    setUpPlayback(id);
    draw(id);
  }

  var urgent = []; // in view
  var later = []; // near the view
  var pumping = false;
  function pump() {
    var id = urgent.length ? urgent.shift() : later.shift();
    if (id !== undefined) fill(id);
    if (!urgent.length && window.__galleryViewMs === undefined && ready) {
      window.__galleryViewMs = performance.now();
    }
    markReady(); // the first card in view is drawn, the controls work
    if (urgent.length || later.length) setTimeout(pump, 0);
    else pumping = false;
  }
  var near = new IntersectionObserver(function (entries) {
    if (!ready) performance.mark("gallery:first-view");
    var height = window.innerHeight;
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      near.unobserve(entry.target);
      var box = entry.boundingClientRect;
      (box.bottom > 0 && box.top < height ? urgent : later).push(entry.target.dataset.tune);
    });
    if (!pumping && (urgent.length || later.length)) {
      pumping = true;
      pump();
    }
  }, { rootMargin: "1200px 0px" });

  function buildMore() {
    var fragment = document.createDocumentFragment();
    var end = Math.min(matching.length, built + PAGE);
    for (; built < end; built++) {
      var id = matching[built];
      var card = cards.get(id);
      if (!card) {
        card = buildCard(byId.get(id));
        cards.set(id, card);
      }
      if (!filled.has(id)) near.observe(card);
      fragment.appendChild(card);
    }
    list.appendChild(fragment);
    sentinel.hidden = built >= matching.length;
  }

  // More cards when the end of the list comes near.
  new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; }) && built < matching.length) buildMore();
  }, { rootMargin: "1500px 0px" }).observe(sentinel);

  // --- playback with a cursor ---------------------------------------------------------------
  // The <audio> is made here, not in the HTML: a thousand media elements in the markup would
  // cost seconds of parsing and layout. (With JavaScript off, the <noscript> copy plays.)
  function setUpPlayback(id) {
    var card = cards.get(id);
    var files = byId.get(id).files;
    var kinds = AUDIO_TYPES.filter(function (kind) { return files[kind[0]]; });
    if (!kinds.length) return;
    var audio = el("audio");
    audio.controls = true;
    audio.preload = "metadata";
    kinds.forEach(function (kind) {
      var source = el("source");
      source.src = files[kind[0]];
      source.type = kind[1];
      audio.appendChild(source);
    });
    var button = el("button", "play", "▶ Play");
    button.type = "button";
    button.setAttribute("aria-label", "Play " + byId.get(id).title);
    var player = el("div", "player");
    player.appendChild(button);
    player.appendChild(audio);
    card.insertBefore(player, card.querySelector(".downloads"));
    var cursor = null;
    button.addEventListener("click", function () {
      if (!audio.paused) {
        audio.pause();
        return;
      }
      var playing = audio.play();
      if (playing && playing.catch) {
        playing.catch(function (error) {
          button.textContent = "▶ Play (" + (error && error.name ? error.name : "cannot play") + ")";
        });
      }
    });
    audio.addEventListener("play", function () {
      button.textContent = "❚❚ Pause";
      list.querySelectorAll("audio").forEach(function (other) { if (other !== audio) other.pause(); });
      if (!cursor) cursor = cursorFor(id, audio);
      if (cursor) follow(card, audio, cursor);
    });
    audio.addEventListener("pause", function () { button.textContent = "▶ Play"; });
  }

  function cursorFor(id, audio) {
    var visual = draw(id);
    if (!visual) return null;
    var all = visual.setTiming(visual.getBpm(), 0);
    var events = all.filter(function (t) { return t.type === "event"; });
    if (!events.length) return null;
    var last = all[all.length - 1].milliseconds;
    return { events: events, last: last, reference: byId.get(id).seconds || audio.duration || 0, lit: [] };
  }

  function follow(card, audio, cursor) {
    function light(event) {
      cursor.lit.forEach(function (node) { node.classList.remove("playing"); });
      cursor.lit = [];
      (event.elements || []).forEach(function (group) {
        (group || []).forEach(function (node) {
          node.classList.add("playing");
          cursor.lit.push(node);
        });
      });
    }
    var shown = -1;
    function step() {
      // Map the audio's clock onto the notation's: both play the same notes, so scale by length.
      var ms = cursor.reference > 0 ? (audio.currentTime / cursor.reference) * cursor.last : audio.currentTime * 1000;
      var i = Math.max(shown, 0);
      while (i + 1 < cursor.events.length && cursor.events[i + 1].milliseconds <= ms) i++;
      while (i > 0 && cursor.events[i].milliseconds > ms) i--;
      if (i !== shown) {
        shown = i;
        light(cursor.events[i]);
        card.dataset.cursor = String(i);
      }
      if (!audio.paused && !audio.ended) window.requestAnimationFrame(step);
      else if (audio.ended) light({ elements: [] });
    }
    window.requestAnimationFrame(step);
  }

  // --- filters, search, sort ----------------------------------------------------------------
  var controls = {
    form: document.getElementById("controls"),
    search: document.getElementById("search"),
    meter: document.getElementById("meter"),
    key: document.getElementById("key"),
    quality: document.getElementById("quality"),
    sort: document.getElementById("sort"),
    favouritesOnly: document.getElementById("favourites-only"),
    shown: document.getElementById("shown"),
  };

  var QUALITY = [
    ["valid", "Valid (abc2midi)", function (t) { return t.valid === true; }],
    ["invalid", "Not valid", function (t) { return t.valid === false; }],
    ["rhythm_ok", "Rhythm check passed", function (t) { return t.rhythm_ok === true; }],
    ["rhythm_bad", "Rhythm check failed", function (t) { return t.rhythm_ok === false; }],
    ["rendered", "Rendered", function (t) { return t.status === "done"; }],
    ["failed", "Failed", function (t) { return t.status === "failed"; }],
  ];
  var qualityTest = new Map(QUALITY.map(function (q) { return [q[0], q[2]]; }));

  function fillSelect(select, values) {
    values.forEach(function (v) {
      var option = el("option", "", v[1]);
      option.value = v[0];
      select.appendChild(option);
    });
  }

  function distinct(field) {
    var seen = new Map();
    tunes.forEach(function (t) { if (t[field]) seen.set(t[field], (seen.get(t[field]) || 0) + 1); });
    return Array.from(seen.keys()).sort().map(function (v) { return [v, v + " (" + seen.get(v) + ")"]; });
  }

  function length(t) {
    return t.seconds !== null && t.seconds !== undefined ? t.seconds : t.bars || 0;
  }

  function similarity(t, missing) {
    return typeof t.similarity === "number" ? t.similarity : missing;
  }

  var SORTS = {
    index: function (a, b) { return a.index - b.index; },
    "length-asc": function (a, b) { return length(a) - length(b) || a.index - b.index; },
    "length-desc": function (a, b) { return length(b) - length(a) || a.index - b.index; },
    "similarity-asc": function (a, b) { return similarity(a, 2) - similarity(b, 2) || a.index - b.index; },
    "similarity-desc": function (a, b) { return similarity(b, -1) - similarity(a, -1) || a.index - b.index; },
  };

  // Filter and sort the data, then rebuild the list from its first page.
  function apply() {
    var words = controls.search.value.trim().toLowerCase();
    var meter = controls.meter.value;
    var key = controls.key.value;
    var quality = qualityTest.get(controls.quality.value);
    var onlyFavourites = controls.favouritesOnly.checked;
    matching = tunes.filter(function (t) {
      return (!words || String(t.title).toLowerCase().indexOf(words) !== -1) &&
        (!meter || t.meter === meter) && (!key || t.key === key) &&
        (!quality || quality(t)) && (!onlyFavourites || favourites.has(t.id));
    }).sort(SORTS[controls.sort.value] || SORTS.index).map(function (t) { return t.id; });
    list.textContent = "";
    built = 0;
    buildMore();
    controls.shown.textContent = matching.length + " of " + tunes.length + " tunes";
    list.dataset.shown = String(matching.length);
  }

  fillSelect(controls.meter, distinct("meter"));
  fillSelect(controls.key, distinct("key"));
  fillSelect(controls.quality, QUALITY.filter(function (q) { return tunes.some(q[2]); }));
  if (!tunes.some(function (t) { return typeof t.similarity === "number"; })) {
    Array.prototype.forEach.call(controls.sort.querySelectorAll("option[value^=similarity]"), function (o) { o.remove(); });
  }
  ["input", "change"].forEach(function (type) { controls.form.addEventListener(type, apply); });
  controls.form.addEventListener("submit", function (e) { e.preventDefault(); });
  list.addEventListener("click", function (e) {
    var star = e.target.closest("button[data-action=favourite]");
    if (!star) return;
    var id = star.closest("article").dataset.tune;
    if (favourites.has(id)) favourites.delete(id);
    else favourites.add(id);
    saveFavourites();
    showStar(star, id);
    if (controls.favouritesOnly.checked) apply();
  });
  document.getElementById("export-ids").addEventListener("click", function () {
    var ids = Array.from(favourites).sort();
    download(data.batch_id + "-favourites.txt", ids.join("\n") + (ids.length ? "\n" : ""), "text/plain");
  });
  document.getElementById("export-abc").addEventListener("click", function () {
    download(data.batch_id + "-favourites.abc", exportTunebook(Array.from(favourites).sort()), "text/vnd.abc");
  });

  if (!window.ABCJS) {
    var warning = el("p", "warning", "abcjs did not load (assets/abcjs-basic-min.js is missing): notation is off.");
    list.parentNode.insertBefore(warning, list);
  }
  controls.form.hidden = false;
  apply();
  performance.mark("gallery:wired");
  if (!matching.length) markReady();
})();
