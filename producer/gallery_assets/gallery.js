// tunebatch gallery: sheet music (abcjs), playback with a cursor, practice controls, filters,
// favourites, export and print.
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
// - Bounded: a card far from the view gives back its notation and player, and gets them again
//   when it comes near (a thousand drawn tunes held 1.27 GB in one renderer).
// - Playback is the batch's own rendered audio in the card's <audio>; the cursor follows
//   audio.currentTime through abcjs's note timings (no soundfont download, as abcjs's synth
//   would need), scaled so the notation's length matches the MIDI's.
// - Practice: speed is the audio's playbackRate with preservesPitch (50-125 %, the pitch kept);
//   a loop plays one pass of a part, the whole tune, or bars chosen on the score, between two
//   times of the audio; a click on a note plays from it. A card states what it does in data-*
//   attributes (data-rate, data-loop-start, data-loop-end), which the browser tests read.
// - The URL holds what is worth sharing: #t000123 opens the page at that tune, and the search,
//   the filters and the tune at the top of the view live in the hash (#q=reel&meter=6/8&at=...).
// - Printing draws every chosen tune first (beforeprint, or the print media query), and the
//   print style shows the notation only.
(function () {
  "use strict";
  performance.mark("gallery:start");

  var PAGE = 24; // cards added to the list at a time
  var BAR_PX = 100; // width a bar needs to be read comfortably: 6 bars a line on a desktop card
  var SPEEDS = { min: 50, max: 125, step: 5 };
  // Notation for transposing instruments: written that many semitones above concert pitch, so
  // the player reads their part while the audio plays at concert pitch, as in a session.
  var NOTATIONS = [["0", "Concert pitch"], ["2", "B♭ instrument"], ["9", "E♭ instrument"], ["7", "F instrument"]];

  var data = JSON.parse(document.getElementById("tune-data").textContent);
  // [format, content type] of the audio the players offer, best first: the formats table's,
  // written into the page by the gallery (producer/gallery.py), never a list of our own.
  var AUDIO_TYPES = data.audio.map(function (format) { return [format, data.content_types[format]]; });
  var tunes = data.tunes;
  var byId = new Map();
  var cards = new Map(); // tune id -> card element, once built
  var drawn = new Map(); // tune id -> abcjs visual object
  var practice = new Map(); // tune id -> the card's player state (audio, loop, cursor)
  var list = document.getElementById("list");
  var sentinel = document.getElementById("more");
  var header = document.querySelector("header");
  var matching = []; // ids that pass the filters, in the chosen order
  var built = 0; // how many of `matching` are in the list
  var printing = false;

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

  function clock(seconds) {
    var s = Math.floor(seconds); // as the player shows it
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
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
    Object.keys(tune.batch_files || {}).sort().forEach(function (format) {
      var link = el("a", "in-batch", format);
      link.href = tune.batch_files[format];
      link.setAttribute("download", "");
      link.title = "From the batch's own files (not copied into the gallery)";
      downloads.appendChild(link);
      downloads.appendChild(document.createTextNode(" "));
    });
    card.appendChild(downloads);
    return card;
  }

  // The notation's width in CSS pixels: abcjs lays the staff out that wide, so it is drawn at
  // its natural size (a staff laid out 740 wide and shrunk to a phone had 4 px note heads).
  function notationWidth() {
    var width = list.clientWidth;
    var any = list.querySelector(".notation");
    if (any && any.clientWidth) width = any.clientWidth;
    return width;
  }

  // Bars a line for that width: the notation is wrapped to the screen, not shrunk to it.
  function barsPerLine(width) {
    return Math.max(2, Math.min(6, Math.floor(width / BAR_PX)));
  }

  var BAR = /::|:*\|+[:\]]*[0-9]*|\[[0-9]/g;
  var NOTE = /[A-Ga-gzxZ]/;

  // The barlines of `text` from `from` on that end a bar with notes in it, as
  // {end: char offset after the barline, section: true where a part ends (:|, ||, |])}. Runs of
  // barlines with nothing between them (which a sampled tune may write) are one barline.
  function barlines(text, from) {
    var found = [];
    var last = from;
    var match;
    BAR.lastIndex = from;
    while ((match = BAR.exec(text)) !== null) {
      var between = text.slice(last, match.index).replace(/"[^"]*"|![^!]*!|\[[A-Za-z]:[^\]]*\]/g, "");
      var end = match.index + match[0].length;
      var section = /:|\|\||\]/.test(match[0]);
      if (NOTE.test(between)) found.push({ end: end, section: section });
      else if (found.length) {
        found[found.length - 1].end = end;
        found[found.length - 1].section = found[found.length - 1].section || section;
      }
      last = end;
    }
    return found;
  }

  // The ABC as drawn: each run of music lines re-broken every `perLine` bars (a line break in
  // ABC is layout only). Cheaper than abcjs's own `wrap`, which lays the tune out twice.
  function displayAbc(abc, perLine) {
    var out = [];
    var run = [];
    var inBody = false;
    function flush() {
      if (!run.length) return;
      var text = run.join(" ");
      var pieces = [];
      var start = 0;
      barlines(text, 0).forEach(function (bar, i) {
        if ((i + 1) % perLine === 0) {
          pieces.push(text.slice(start, bar.end).trim());
          start = bar.end;
        }
      });
      pieces.push(text.slice(start).trim());
      out.push(pieces.filter(function (p) { return p; }).join("\n"));
      run = [];
    }
    abc.replace(/\r\n/g, "\n").split("\n").forEach(function (line) {
      var field = /^\s*(%|[A-Za-z]:)/.test(line);
      if (!inBody || field || /\\\s*$/.test(line) || !line.trim()) {
        flush();
        out.push(line);
        if (/^K:/.test(line)) inBody = true;
      } else {
        run.push(line.trim());
      }
    });
    flush();
    return out.join("\n");
  }

  // Where the bars and the sections (parts) of the drawn ABC end, by char offset, so a note's
  // startChar says which bar and which part it is in.
  function layout(text) {
    var body = text.search(/^K:.*$/m);
    body = body < 0 ? 0 : text.indexOf("\n", body) + 1;
    var found = barlines(text, body);
    return {
      bars: found.map(function (b) { return b.end; }),
      sections: found.filter(function (b) { return b.section; }).map(function (b) { return b.end; }),
    };
  }

  function countBefore(sorted, value) {
    var n = 0;
    while (n < sorted.length && sorted[n] <= value) n++;
    return n;
  }

  function draw(id) {
    if (drawn.has(id)) return drawn.get(id);
    var tune = byId.get(id);
    var card = cards.get(id);
    if (!tune.abc || !card || !window.ABCJS) return null;
    var target = el("div", "score");
    card.querySelector(".notation").appendChild(target);
    var state = practice.get(id);
    var width = notationWidth();
    var text = displayAbc(tune.abc, barsPerLine(width));
    var visual = window.ABCJS.renderAbc(target, text, {
      add_classes: true,
      responsive: "resize",
      staffwidth: Math.max(200, width - 40),
      visualTranspose: state ? state.transpose : 0,
      selectTypes: ["note"],
      clickListener: function (abcElem) {
        if (abcElem && typeof abcElem.startChar === "number") noteClicked(id, abcElem.startChar);
      },
    })[0] || null;
    if (visual) visual.layout = layout(text);
    drawn.set(id, visual);
    card.classList.add("drawn");
    return visual;
  }

  function undraw(id) {
    var card = cards.get(id);
    drawn.delete(id);
    if (!card) return;
    var score = card.querySelector(".score");
    if (score) score.remove();
    card.classList.remove("drawn");
  }

  // A card gets its notation and player when it comes within a screen or so of the viewport.
  // One card is filled in per task, those in view first, so the page answers input between
  // cards and never blocks for long. A card far from the view (beyond `FAR`) is swapped for an
  // empty stand-in of its height (an <article> with its id, so links and the layout hold), and
  // built again when it comes near: a thousand cards, drawn or not, held 1.27 GB.
  var FAR = "3000px 0px";
  var filled = new Set();
  var placeholders = new Map(); // tune id -> the stand-in of a card far from the view
  function fill(id) {
    if (filled.has(id) || !cards.has(id)) return;
    filled.add(id);
    setUpPlayback(id);
    draw(id);
  }

  function unload(ids) {
    var heights = ids.map(function (id) { return cards.get(id).offsetHeight; }); // reads, then writes
    ids.forEach(function (id, i) {
      var state = practice.get(id);
      if (state && !state.audio.paused) return; // never silence what is playing
      var card = cards.get(id);
      far.unobserve(card);
      near.unobserve(card);
      filled.delete(id);
      undraw(id);
      if (state) {
        // A media element keeps its decoder and buffers until it is emptied and reloaded.
        state.audio.querySelectorAll("source").forEach(function (source) { source.remove(); });
        state.audio.load();
        practice.delete(id);
      }
      var stand = el("article", "tune placeholder");
      stand.id = id;
      stand.dataset.tune = id;
      stand.style.height = heights[i] + "px";
      card.replaceWith(stand);
      cards.delete(id);
      placeholders.set(id, stand);
      near.observe(stand);
    });
    unloadedCount += ids.length;
    list.dataset.unloaded = String(unloadedCount);
  }
  var unloadedCount = 0;

  // The card of `id` back in the list in place of its stand-in.
  function restoreCard(id) {
    var stand = placeholders.get(id);
    if (!stand) return cards.get(id);
    near.unobserve(stand);
    placeholders.delete(id);
    var card = buildCard(byId.get(id));
    cards.set(id, card);
    stand.replaceWith(card);
    far.observe(card);
    return card;
  }

  var urgent = []; // in view
  var later = []; // near the view
  var pumping = false;
  function pump() {
    // Ids queued during a fast scroll may have been unloaded (or filled) since: skip them here,
    // not a task each, or the cards in view wait behind a thousand stale ones.
    var id;
    do {
      id = urgent.length ? urgent.shift() : later.shift();
    } while (id !== undefined && (filled.has(id) || !cards.has(id)));
    if (id !== undefined) fill(id);
    if (!urgent.length && window.__galleryViewMs === undefined && ready) {
      window.__galleryViewMs = performance.now();
    }
    markReady(); // the first card in view is drawn, the controls work
    if (urgent.length || later.length) setTimeout(pump, 0);
    else {
      pumping = false;
      if (aiming) checkLater(0);
    }
  }
  var near = new IntersectionObserver(function (entries) {
    if (!ready) performance.mark("gallery:first-view");
    var height = window.innerHeight;
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      var id = entry.target.dataset.tune;
      near.unobserve(entry.target);
      if (placeholders.get(id) === entry.target) restoreCard(id);
      var box = entry.boundingClientRect;
      (box.bottom > 0 && box.top < height ? urgent : later).push(id);
    });
    if (!pumping && (urgent.length || later.length)) {
      pumping = true;
      pump();
    }
  }, { rootMargin: "1200px 0px" });

  var far = new IntersectionObserver(function (entries) {
    if (printing) return;
    var gone = entries.filter(function (entry) {
      var id = entry.target.dataset.tune;
      return !entry.isIntersecting && entry.target.isConnected && cards.get(id) === entry.target;
    }).map(function (entry) { return entry.target.dataset.tune; });
    if (gone.length) unload(gone);
  }, { rootMargin: FAR });

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
      far.observe(card);
      fragment.appendChild(card);
    }
    list.appendChild(fragment);
    sentinel.hidden = built >= matching.length;
  }

  function buildUpTo(count) {
    while (built < Math.min(count, matching.length)) buildMore();
  }

  // More cards when the end of the list comes near.
  new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; }) && built < matching.length) buildMore();
  }, { rootMargin: "1500px 0px" }).observe(sentinel);

  // --- playback, cursor and practice ---------------------------------------------------------
  // The <audio> is made here, not in the HTML: a thousand media elements in the markup would
  // cost seconds of parsing and layout. (With JavaScript off, the <noscript> copy plays.)
  function setUpPlayback(id) {
    var card = cards.get(id);
    var tune = byId.get(id);
    var files = tune.files;
    var kinds = AUDIO_TYPES.filter(function (kind) { return files[kind[0]]; });
    if (!kinds.length) return;
    var audio = el("audio");
    audio.controls = true;
    audio.preload = "none";
    kinds.forEach(function (kind) {
      var source = el("source");
      source.src = files[kind[0]];
      source.type = kind[1];
      audio.appendChild(source);
    });
    var player = el("div", "player");
    var button = el("button", "play", "▶ Play");
    button.type = "button";
    button.setAttribute("aria-label", "Play " + tune.title);
    var row = el("div", "practice");
    row.appendChild(button);
    var state = { audio: audio, player: player, cursor: null, loop: null, choosing: null, transpose: 0, rate: 1, shown: -1 };
    practice.set(id, state);
    row.appendChild(speedControl(card, tune, state));
    row.appendChild(loopControl(id, card, state));
    row.appendChild(notationControl(id, state));
    player.appendChild(row);
    var hint = el("p", "hint");
    hint.hidden = true;
    player.appendChild(hint);
    state.hint = hint;
    player.appendChild(audio);
    card.insertBefore(player, card.querySelector(".downloads"));

    button.addEventListener("click", function () {
      if (!audio.paused) audio.pause();
      else play(state, button);
    });
    audio.addEventListener("play", function () {
      button.textContent = "❚❚ Pause";
      button.setAttribute("aria-label", "Pause " + tune.title);
      list.querySelectorAll("audio").forEach(function (other) { if (other !== audio) other.pause(); });
      audio.playbackRate = state.rate;
      audio.preservesPitch = true;
      if (!state.cursor) state.cursor = cursorFor(id, audio);
      if (state.loop && (audio.currentTime < state.loop.start || audio.currentTime >= state.loop.end)) {
        audio.currentTime = state.loop.start;
      }
      follow(card, audio, state);
    });
    audio.addEventListener("pause", function () {
      button.textContent = "▶ Play";
      button.setAttribute("aria-label", "Play " + tune.title);
    });
    // A seek while paused moves the cursor too (it follows the audio only while playing).
    audio.addEventListener("seeked", function () {
      if (!state.cursor) state.cursor = cursorFor(id, audio);
      if (state.cursor && audio.paused) showAt(card, audio, state);
    });
    // The card's length is the audio's, as its player shows it (the page reads it from the OGG
    // when it is built; this covers MP3 and WAV, once the player has loaded them). Metadata is
    // not preloaded: a media element that has it holds a few MB of decoder state.
    audio.addEventListener("loadedmetadata", function () {
      var length = card.querySelector(".fact-length dd");
      if (length && isFinite(audio.duration)) {
        length.textContent = (tune.bars !== null && tune.bars !== undefined ? tune.bars + " bars · " : "") + clock(audio.duration);
      }
    });
  }

  function play(state, button) {
    var playing = state.audio.play();
    if (playing && playing.catch) {
      playing.catch(function (error) {
        button.textContent = "▶ Play (" + (error && error.name ? error.name : "cannot play") + ")";
      });
    }
  }

  function speedControl(card, tune, state) {
    var label = el("label", "speed", "Speed ");
    var input = el("input");
    input.type = "range";
    input.min = String(SPEEDS.min);
    input.max = String(SPEEDS.max);
    input.step = String(SPEEDS.step);
    input.value = "100";
    input.setAttribute("aria-label", "Speed of " + tune.title + " in percent");
    var shown = el("output", "", "");
    function set() {
      var percent = Number(input.value);
      state.rate = percent / 100;
      state.audio.defaultPlaybackRate = state.rate;
      state.audio.playbackRate = state.rate;
      state.audio.preservesPitch = true; // slower, not lower
      card.dataset.rate = String(state.rate);
      var tempo = /^(\d+\/\d+)=(\d+)$/.exec(tune.tempo || "");
      shown.textContent = percent + " %" + (tempo ? " · " + tempo[1] + "=" + Math.round(Number(tempo[2]) * state.rate) : "");
    }
    input.addEventListener("input", set);
    set();
    label.appendChild(input);
    label.appendChild(shown);
    return label;
  }

  function loopControl(id, card, state) {
    var select = el("select", "loop");
    select.setAttribute("aria-label", "Loop");
    var options = [["", "No loop"], ["all", "Loop the tune"]];
    var tune = byId.get(id);
    (tune.parts || []).forEach(function (_, i) {
      options.push(["part:" + i, "Loop part " + String.fromCharCode(65 + i)]);
    });
    options.push(["bars", "Loop bars chosen on the score…"]);
    options.forEach(function (o) {
      var option = el("option", "", o[1]);
      option.value = o[0];
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      if (!state.cursor) state.cursor = cursorFor(id, state.audio);
      state.choosing = null;
      var value = select.value;
      if (value === "bars") {
        state.choosing = [];
        setLoop(card, state, null);
        say(state, "Click the first note of the bars to loop, then a note of the last bar.");
        return;
      }
      say(state, "");
      if (!value || !state.cursor) setLoop(card, state, null);
      else if (value === "all") setLoop(card, state, { start: 0, end: state.cursor.reference });
      else {
        var part = Number(value.split(":")[1]);
        setLoop(card, state, span(state.cursor, function (c) { return sectionOf(state.cursor, c) === part; }));
      }
    });
    state.loopSelect = select;
    return select;
  }

  function notationControl(id, state) {
    var select = el("select", "transpose");
    select.setAttribute("aria-label", "Notation for");
    NOTATIONS.forEach(function (o) {
      var option = el("option", "", o[1]);
      option.value = o[0];
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      state.transpose = Number(select.value);
      undraw(id);
      draw(id);
      state.cursor = null; // its notes were the old drawing's
      state.cursor = cursorFor(id, state.audio);
      if (state.loopSelect.value && state.loopSelect.value !== "bars") state.loopSelect.dispatchEvent(new Event("change"));
    });
    return select;
  }

  function say(state, text) {
    state.hint.textContent = text;
    state.hint.hidden = !text;
  }

  function setLoop(card, state, loop) {
    state.loop = loop && loop.end > loop.start ? loop : null;
    if (state.loop) {
      card.dataset.loopStart = state.loop.start.toFixed(3);
      card.dataset.loopEnd = state.loop.end.toFixed(3);
    } else {
      delete card.dataset.loopStart;
      delete card.dataset.loopEnd;
    }
  }

  function charOf(event) {
    if (typeof event.startChar === "number") return event.startChar;
    return event.startCharArray && event.startCharArray.length ? event.startCharArray[0] : -1;
  }

  function sectionOf(cursor, char) {
    return countBefore(cursor.layout.sections, char) - cursor.firstSection;
  }

  function barOf(cursor, char) {
    return countBefore(cursor.layout.bars, char);
  }

  // The audio times of one pass through the notes `inside` says are in: from the first such
  // note to the first note after it that is not, or that jumps back (a repeat).
  function span(cursor, inside) {
    var events = cursor.events;
    var first = -1;
    for (var i = 0; i < events.length; i++) {
      if (inside(charOf(events[i]))) { first = i; break; }
    }
    if (first < 0) return null;
    var endMs = cursor.last;
    for (var j = first + 1; j < events.length; j++) {
      var c = charOf(events[j]);
      if (!inside(c) || c < charOf(events[j - 1])) { endMs = events[j].milliseconds; break; }
    }
    return { start: cursor.toAudio(events[first].milliseconds), end: cursor.toAudio(endMs) };
  }

  function cursorFor(id, audio) {
    var visual = draw(id);
    if (!visual) return null;
    var all = visual.setTiming(visual.getBpm(), 0);
    var events = all.filter(function (t) { return t.type === "event"; });
    if (!events.length) return null;
    var last = all[all.length - 1].milliseconds;
    var tune = byId.get(id);
    var reference = tune.midi_seconds || tune.seconds || audio.duration || 0;
    var cursor = {
      events: events, last: last, reference: reference, lit: [], layout: visual.layout || { bars: [], sections: [] },
      // Both play the same notes, so the notation's clock maps onto the audio's by length.
      toAudio: function (ms) { return reference > 0 ? (ms / last) * reference : ms / 1000; },
      toNotation: function (seconds) { return reference > 0 ? (seconds / reference) * last : seconds * 1000; },
    };
    // A tune that opens with a repeat sign has an empty section before it: parts count from the
    // section of the first note.
    cursor.firstSection = countBefore(cursor.layout.sections, charOf(events[0]));
    return cursor;
  }

  function light(state, event) {
    var cursor = state.cursor;
    cursor.lit.forEach(function (node) { node.classList.remove("playing"); });
    cursor.lit = [];
    (event.elements || []).forEach(function (group) {
      (group || []).forEach(function (node) {
        node.classList.add("playing");
        cursor.lit.push(node);
      });
    });
  }

  function showAt(card, audio, state) {
    var cursor = state.cursor;
    var ms = cursor.toNotation(audio.currentTime);
    var i = Math.max(Math.min(state.shown, cursor.events.length - 1), 0);
    while (i + 1 < cursor.events.length && cursor.events[i + 1].milliseconds <= ms) i++;
    while (i > 0 && cursor.events[i].milliseconds > ms) i--;
    if (i !== state.shown) {
      state.shown = i;
      light(state, cursor.events[i]);
      card.dataset.cursor = String(i);
    }
  }

  function follow(card, audio, state) {
    function step() {
      var loop = state.loop;
      if (loop && audio.currentTime >= loop.end) {
        audio.currentTime = loop.start;
        card.dataset.looped = String(Number(card.dataset.looped || 0) + 1);
      }
      if (state.cursor) showAt(card, audio, state);
      if (!audio.paused && !audio.ended) window.requestAnimationFrame(step);
      else if (audio.ended && state.cursor) light(state, { elements: [] });
    }
    window.requestAnimationFrame(step);
  }

  // A click on a note (abcjs finds the note nearest the pointer, which a finger needs) plays
  // from it, or, while bars are being chosen, marks one end of the loop.
  function noteClicked(id, startChar) {
    var card = cards.get(id);
    var state = practice.get(id);
    if (!card || !state) return;
    if (!state.cursor) state.cursor = cursorFor(id, state.audio);
    var cursor = state.cursor;
    if (!cursor) return;
    var event = cursor.events.find(function (ev) {
      return charOf(ev) === startChar || (ev.startCharArray || []).indexOf(startChar) !== -1;
    });
    if (!event) return;
    if (state.choosing) {
      state.choosing.push(barOf(cursor, startChar));
      if (state.choosing.length === 1) {
        say(state, "Now click a note of the last bar to loop.");
        return;
      }
      var from = Math.min(state.choosing[0], state.choosing[1]);
      var to = Math.max(state.choosing[0], state.choosing[1]);
      state.choosing = null;
      setLoop(card, state, span(cursor, function (c) { var b = barOf(cursor, c); return b >= from && b <= to; }));
      say(state, state.loop ? "Looping bars " + (from + 1) + "–" + (to + 1) + " (choose the loop again to change it)." : "");
      if (state.loop) {
        state.audio.currentTime = state.loop.start;
        play(state, card.querySelector("button.play"));
      }
      return;
    }
    var at = cursor.toAudio(event.milliseconds);
    if (state.loop && (at < state.loop.start || at >= state.loop.end)) {
      state.loopSelect.value = "";
      setLoop(card, state, null);
    }
    state.audio.currentTime = at;
    card.dataset.playedFrom = at.toFixed(3);
    play(state, card.querySelector("button.play"));
  }

  // --- filters, search, sort, the URL -------------------------------------------------------
  var controls = {
    form: document.getElementById("controls"),
    search: document.getElementById("search"),
    type: document.getElementById("type"),
    meter: document.getElementById("meter"),
    key: document.getElementById("key"),
    quality: document.getElementById("quality"),
    sort: document.getElementById("sort"),
    favouritesOnly: document.getElementById("favourites-only"),
    shown: document.getElementById("shown"),
    none: document.getElementById("none"),
    exportAbc: document.getElementById("export-abc"),
    exportIds: document.getElementById("export-ids"),
  };
  // Control -> its name in the URL's hash.
  var IN_URL = [["search", "q"], ["type", "type"], ["meter", "meter"], ["key", "key"], ["quality", "quality"], ["sort", "sort"]];

  var QUALITY = [
    ["valid", "abc2midi: no errors", function (t) { return t.valid === true; }],
    ["invalid", "abc2midi: errors", function (t) { return t.valid === false; }],
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

  // The card at the top of the view (below a sticky header), to keep it there across a filter
  // change and to name it in the URL.
  function topCard() {
    if (window.scrollY < 4) return null;
    var x = Math.max(8, list.getBoundingClientRect().left + 24);
    for (var y = headerOffset() + 8; y < window.innerHeight; y += 24) {
      var hit = document.elementFromPoint(x, y);
      var card = hit && hit.closest ? hit.closest("#list .tune") : null;
      if (card) return card.dataset.tune;
    }
    return null;
  }

  // Filter and sort the data, then rebuild the list; the tune at the top stays there if it
  // still matches.
  function apply(keepAt) {
    var at = keepAt === undefined ? topCard() : keepAt;
    var words = controls.search.value.trim().toLowerCase();
    var type = controls.type.value;
    var meter = controls.meter.value;
    var key = controls.key.value;
    var quality = qualityTest.get(controls.quality.value);
    var onlyFavourites = controls.favouritesOnly.checked;
    matching = tunes.filter(function (t) {
      return (!words || String(t.title).toLowerCase().indexOf(words) !== -1) &&
        (!type || t.type === type) && (!meter || t.meter === meter) && (!key || t.key === key) &&
        (!quality || quality(t)) && (!onlyFavourites || favourites.has(t.id));
    }).sort(SORTS[controls.sort.value] || SORTS.index).map(function (t) { return t.id; });
    placeholders.forEach(function (stand) { near.unobserve(stand); });
    placeholders.clear();
    list.textContent = "";
    built = 0;
    buildMore();
    controls.shown.textContent = matching.length + " of " + tunes.length + " tunes";
    list.dataset.shown = String(matching.length);
    controls.none.hidden = matching.length > 0;
    controls.exportAbc.disabled = matching.length === 0;
    controls.exportAbc.textContent = "Export " + (matching.length === tunes.length ? "all " : "") + matching.length + " shown tunes (.abc)";
    controls.exportIds.disabled = favourites.size === 0;
    if (at && matching.indexOf(at) !== -1) goTo(at);
    else if (keepAt !== null && window.scrollY > headerBottom()) window.scrollTo(0, 0);
    writeUrl();
  }

  function headerOffset() {
    return getComputedStyle(header).position === "sticky" ? header.offsetHeight : 0;
  }

  function headerBottom() {
    return header.offsetTop + header.offsetHeight;
  }

  function placeHeader() {
    document.documentElement.style.setProperty("--header-h", headerOffset() + "px");
  }

  // Scroll to a tune, building the list up to it; scroll again while the cards drawn above it
  // still move it, unless the reader has moved meanwhile. Arrived (html[data-arrived]) once a
  // check finds the card where the last scroll put it with nothing left to draw: the drawing
  // starts when the observers see the new view, which a loaded machine may do late.
  var aiming = null;
  var aimedTop = null; // the card's top right after the last scroll to it
  var settleChecks = 0;
  var settleTimer = null;
  function goTo(id) {
    var index = matching.indexOf(id);
    if (index === -1) return false;
    buildUpTo(index + 1);
    restoreCard(id);
    fill(id);
    aiming = id;
    settleChecks = 0;
    delete document.documentElement.dataset.arrived;
    aimAgain(cards.get(id));
    checkLater(250);
    return true;
  }

  function aimAgain(card) {
    card.scrollIntoView({ block: "start" });
    aimedTop = card.getBoundingClientRect().top;
  }

  function checkLater(ms) {
    clearTimeout(settleTimer);
    settleTimer = setTimeout(settled, ms);
  }

  function settled() {
    if (!aiming) return;
    var card = cards.get(aiming);
    if (card && card.isConnected) {
      var moved = Math.abs(card.getBoundingClientRect().top - aimedTop) > 1;
      aimAgain(card);
      settleChecks += 1;
      if ((moved || pumping) && settleChecks < 40) {
        checkLater(150); // at most ~6 s: a card that never stops moving is left where it is
        return;
      }
    }
    aiming = null;
    document.documentElement.dataset.arrived = "1";
  }

  ["wheel", "touchstart", "keydown", "mousedown"].forEach(function (type) {
    window.addEventListener(type, function () { aiming = null; }, { passive: true });
  });

  function readUrl() {
    var hash = decodeURIComponent(window.location.hash.slice(1));
    if (/^t\d+$/.test(hash)) return { at: hash };
    var params = new URLSearchParams(window.location.hash.slice(1));
    var state = {};
    params.forEach(function (value, name) { state[name] = value; });
    return state;
  }

  function writeUrl() {
    var params = new URLSearchParams();
    IN_URL.forEach(function (pair) {
      var value = controls[pair[0]].value;
      if (value && !(pair[0] === "sort" && value === "index")) params.set(pair[1], value);
    });
    if (controls.favouritesOnly.checked) params.set("fav", "1");
    var at = topCard();
    if (at) params.set("at", at);
    var hash = params.toString();
    var url = window.location.pathname + window.location.search + (hash ? "#" + hash : "");
    if (url !== window.location.pathname + window.location.search + window.location.hash) {
      window.history.replaceState(null, "", url);
    }
  }

  var writing = null;
  window.addEventListener("scroll", function () {
    if (writing) return;
    writing = setTimeout(function () { writing = null; writeUrl(); }, 300);
  }, { passive: true });

  function restoreControls(state) {
    IN_URL.forEach(function (pair) {
      var control = controls[pair[0]];
      var value = state[pair[1]];
      if (value === undefined) return;
      if (control.tagName === "SELECT" && !Array.prototype.some.call(control.options, function (o) { return o.value === value; })) return;
      control.value = value;
    });
    controls.favouritesOnly.checked = state.fav === "1";
  }

  function reset() {
    IN_URL.forEach(function (pair) { controls[pair[0]].value = pair[0] === "sort" ? "index" : ""; });
    controls.favouritesOnly.checked = false;
    apply(null);
  }

  // --- print --------------------------------------------------------------------------------
  // Every chosen tune is drawn before the page is printed: cards not yet built or drawn (far
  // down a long list) would print blank.
  function prepareForPrint() {
    printing = true;
    buildUpTo(matching.length);
    matching.forEach(function (id) {
      restoreCard(id);
      draw(id);
    });
    document.documentElement.dataset.printReady = String(matching.length);
  }

  function afterPrint() {
    printing = false;
    delete document.documentElement.dataset.printReady;
  }

  window.addEventListener("beforeprint", prepareForPrint);
  window.addEventListener("afterprint", afterPrint);
  var printQuery = window.matchMedia("print");
  printQuery.addEventListener("change", function (e) { if (e.matches) prepareForPrint(); else afterPrint(); });

  // --- wiring -------------------------------------------------------------------------------
  var TYPE_LABELS = new Map();
  tunes.forEach(function (t) { if (t.type) TYPE_LABELS.set(t.type, (TYPE_LABELS.get(t.type) || 0) + 1); });
  fillSelect(controls.type, Array.from(TYPE_LABELS.keys()).sort().map(function (v) { return [v, v + " (" + TYPE_LABELS.get(v) + ")"]; }));
  if (!TYPE_LABELS.size) controls.type.hidden = true;
  fillSelect(controls.meter, distinct("meter"));
  fillSelect(controls.key, distinct("key"));
  fillSelect(controls.quality, QUALITY.filter(function (q) { return tunes.some(q[2]); }));
  if (!tunes.some(function (t) { return typeof t.similarity === "number"; })) {
    Array.prototype.forEach.call(controls.sort.querySelectorAll("option[value^=similarity]"), function (o) { o.remove(); });
  }
  ["input", "change"].forEach(function (type) { controls.form.addEventListener(type, function () { apply(); }); });
  controls.form.addEventListener("submit", function (e) { e.preventDefault(); });
  document.getElementById("reset").addEventListener("click", reset);
  document.getElementById("print").addEventListener("click", function () { window.print(); });
  list.addEventListener("click", function (e) {
    var star = e.target.closest("button[data-action=favourite]");
    if (!star) return;
    var id = star.closest("article").dataset.tune;
    if (favourites.has(id)) favourites.delete(id);
    else favourites.add(id);
    saveFavourites();
    showStar(star, id);
    controls.exportIds.disabled = favourites.size === 0;
    if (controls.favouritesOnly.checked) apply();
  });
  controls.exportIds.addEventListener("click", function () {
    var ids = Array.from(favourites).sort();
    download(data.batch_id + "-favourites.txt", ids.join("\n") + "\n", "text/plain");
  });
  controls.exportAbc.addEventListener("click", function () {
    var name = controls.favouritesOnly.checked ? "favourites" : matching.length === tunes.length ? "all" : "shown";
    download(data.batch_id + "-" + name + ".abc", exportTunebook(matching.slice()), data.content_types.abc);
  });

  // Phones: the filters fold away under the title, and the header scrolls with the page.
  var tools = document.getElementById("tools");
  var narrow = window.matchMedia("(max-width: 40rem)");
  tools.open = !narrow.matches;
  narrow.addEventListener("change", function () { tools.open = !narrow.matches; placeHeader(); });
  tools.addEventListener("toggle", placeHeader);
  window.addEventListener("resize", placeHeader);

  if (!window.ABCJS) {
    var warning = el("p", "warning", "abcjs did not load (assets/abcjs-basic-min.js is missing): notation is off.");
    list.parentNode.insertBefore(warning, list);
  }
  controls.form.hidden = false;
  placeHeader();
  var start = readUrl();
  restoreControls(start);
  if (start.fav === "1" || Object.keys(start).some(function (k) { return k !== "at"; })) tools.open = true;
  apply(null);
  if (start.at && !goTo(start.at)) {
    // A link to a tune the filters hide: show every tune, then go to it.
    reset();
    goTo(start.at);
  }
  window.addEventListener("hashchange", function () {
    var state = readUrl();
    if (state.at && Object.keys(state).length === 1) goTo(state.at);
  });
  performance.mark("gallery:wired");
  if (!matching.length) markReady();
})();
