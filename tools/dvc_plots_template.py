"""Write tools/dvc-plots.html: the page template of `dvc plots show` with vega, vega-lite and
vega-embed inlined from tools/node_modules (the versions pinned in tools/package.json), so that the
plots render with no network. `make setup` runs it after `npm ci --prefix tools`; .dvc/config
points DVC at the result (`plots.html_template`).

    python3 tools/dvc_plots_template.py [--out tools/dvc-plots.html] [--node-modules tools/node_modules]

DVC fills three placeholders: {plot_divs} (required), {refresh_tag}, and {scripts}, where it would
put <script> tags loading vega from a CDN. This template has no {scripts}, so none are added. Without
node_modules (no npm) it writes DVC's own CDN template instead and says so: the plots then need the
network, and `dvc plots show` keeps working.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARIES = [  # (package, UMD build); vega-embed expects the globals `vega` and `vegaLite`
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
]
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- %(note)s -->
%(scripts)s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def inlined(node_modules: Path) -> str:
    parts = []
    for package, build in LIBRARIES:
        version = json.loads((node_modules / package / "package.json").read_text(encoding="utf-8"))["version"]
        code = (node_modules / package / build).read_text(encoding="utf-8")
        for p in PLACEHOLDERS:  # DVC replaces these strings wherever they are
            if p in code:
                raise SystemExit(f"{package}/{build} contains the DVC placeholder {p}; cannot inline it")
        code = code.replace("</script", "<\\/script")
        parts.append(f"    <script>/* {package} {version} ({package}/{build}) */\n{code}\n    </script>")
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "dvc-plots.html")
    p.add_argument("--node-modules", type=Path, default=HERE / "node_modules")
    a = p.parse_args(argv)
    if all((a.node_modules / pkg / build).is_file() for pkg, build in LIBRARIES):
        page = PAGE % {
            "note": "vega, vega-lite and vega-embed inlined from tools/node_modules "
            "(tools/dvc_plots_template.py): renders with no network",
            "scripts": inlined(a.node_modules),
        }
        what = "inlined vega, vega-lite, vega-embed"
    else:
        page = PAGE % {
            "note": "tools/node_modules is missing (no npm?): vega is loaded from a CDN by DVC; "
            "run `npm ci --prefix tools` and `make setup` for an offline page",
            "scripts": "    {scripts}",
        }
        what = "CDN fallback: tools/node_modules has no vega build; the plots will need the network"
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(a.out)
    print(f"{a.out}: {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
