"""From one ABC tune to files, with every external tool run in a sandbox.

* `pipeline` — the entry points (`check_abc`, `rendered`): the gate, the stages in order, the result
* `formats` — the output formats, what each is made from and by which tool, `parse_formats`
* `stages` — one function per tool: abc2midi, timidity/fluidsynth, loudness, abcm2ps, encoders
* `versions` — the tool versions every manifest records
* `workdir` — the private directory a render works in
* `tool_run` — running one tool with limits; `sandbox` — the bubblewrap jail around it
* `verdict` — abc2midi's verdict; `midi` — the MIDI reader; `loudness` — LUFS; `svg` — sanitiser
"""
