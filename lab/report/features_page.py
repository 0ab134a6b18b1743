"""The BPF feature matrix as a section of the HTML report: every probed feature per kernel, the
rows that differ shown first (and alone until asked), with a filter box. Self-contained: inline
CSS and a few lines of inline script, nothing fetched."""

from __future__ import annotations

import html
from collections.abc import Mapping

from lab.guest.features import Features, matrix_rows

CSS = """
#features td.yes{background:#d3f5dc;color:#0f5323;text-align:center} #features td.no{background:#ffd7d5;color:#82071e;text-align:center}
#features td.unknown{color:#8c959f;text-align:center} #features tr.same{display:none} #features.all tr.same{display:table-row}
"""

# Filter by substring; show rows every kernel agrees on only when asked.
_SCRIPT = """
<script>
(function () {
  var table = document.getElementById("features"), box = document.getElementById("feature-filter"),
      all = document.getElementById("feature-all");
  function update() {
    table.className = all.checked ? "matrix all" : "matrix";
    var words = box.value.toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.hidden = words !== "" && row.cells[0].textContent.toLowerCase().indexOf(words) < 0;
    });
  }
  box.addEventListener("input", update); all.addEventListener("change", update);
})();
</script>
"""

_CLASS = {"yes": "yes", "no": "no", "?": "unknown"}


def render_section(table: Mapping[str, Features]) -> str:
    """The section's HTML: nothing when no kernel of the report was probed."""
    if not table:
        return ""
    esc = html.escape
    differ = set(matrix_rows(table))
    rows = matrix_rows(table, everything=True)
    parts = ["<h2>BPF features per kernel</h2>",
             (f"<p>From <code>bpftool feature probe</code> in each kernel's guest ({len(differ)} of {len(rows)} differ). "
              '<input id="feature-filter" placeholder="filter, e.g. ringbuf" size="24"> '
              '<label><input type="checkbox" id="feature-all"> also the features every kernel has alike</label></p>'),
             '<table class="matrix" id="features"><thead><tr><th>feature</th>']
    parts += [f'<th class="kernel">{esc(kernel)}</th>' for kernel in table]
    parts.append("</tr></thead><tbody>")
    for name in rows:
        parts.append(f'<tr class="{"differs" if name in differ else "same"}"><th>{esc(name)}</th>')
        for features in table.values():
            state = features.state(name)
            parts.append(f'<td class="{_CLASS[state]}">{esc(state)}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table>")
    parts.append(_SCRIPT)
    return "\n".join(parts)
