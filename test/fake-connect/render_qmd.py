"""The fake Connect's model of rendering a quarto-static document with Quarto's Jupyter engine (Quarto itself is not
installable here): the document's Python cells run in order in one Jupyter kernel of the bundle's environment (the
venv this interpreter belongs to), with the variables Connect gives rendered content; the HTML they display becomes
the page, and the inline `{python} ...` expressions of the .email-scheduled and .subject blocks are evaluated as
Quarto's email format would, for the fake to record whether Connect would send the scheduled email.

Usage: python render_qmd.py DOCUMENT.qmd OUTPUT_DIR. Writes OUTPUT_DIR/index.html and OUTPUT_DIR/email.json.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELL = re.compile(r"^```\{python\}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EMAIL_BLOCK = re.compile(r"^::: \{\.email\}$(.*)^:::$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"^::: \{\.(email-scheduled|subject)\}\n`\{python\} (.+?)`\n:::$", re.MULTILINE)


def main(document: Path, output: Path) -> None:
    text = document.read_text()
    email = EMAIL_BLOCK.search(text)
    body = text[: email.start()] if email else text
    cells = [nbformat.v4.new_code_cell(code.rstrip()) for code in CELL.findall(body)]
    inline = dict(INLINE.findall(email.group(1))) if email else {}
    probe = "import json as _j\nprint(_j.dumps({" + ", ".join(f"{k!r}: str({v})" for k, v in inline.items()) + "}))"
    notebook = nbformat.v4.new_notebook(cells=[*cells, nbformat.v4.new_code_cell(probe)])
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(document.parent)}}
    ).execute()
    html = []
    for cell in notebook.cells[:-1]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                html.append(data["text/html"])
            elif out.get("name") == "stdout":
                html.append(f"<pre>{out['text']}</pre>")
    decided = json.loads("".join(o.get("text", "") for o in notebook.cells[-1].get("outputs", [])) or "{}")
    title = re.search(r'^title: "(.*)"$', text, re.MULTILINE)
    output.mkdir(parents=True, exist_ok=True)
    (output / "index.html").write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title.group(1) if title else document.stem}</title></head>\n<body style='margin: 24px;'>\n"
        + "\n".join(html)
        + "\n</body></html>\n"
    )
    (output / "email.json").write_text(
        json.dumps({"scheduled": decided.get("email-scheduled") == "True", "subject": decided.get("subject")})
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
