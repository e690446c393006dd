"""From one ABC tune to files, with every external tool run in a sandbox.

Which files there are, and what each is made from, is `common.formats` (the one table the
specs, the bucket and the gallery read too); this package makes them.

* `pipeline` — the entry points (`check_abc`, `rendered`): the gate, the stages in order, the result
* `stages` — one function per tool, and `STAGES`: the stage that makes each converted format
* `versions` — the tool versions every manifest records
* `workdir` — the private directory a render works in
* `tool_run` — running one tool with limits; `sandbox` — the bubblewrap jail around it
* `verdict` — abc2midi's verdict; `midi` — the MIDI reader; `loudness` — LUFS; `svg` — sanitiser
"""
