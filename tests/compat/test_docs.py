"""The guides run as written: every ```toml block passes `sockway validate`, and the ```sh
blocks of a page, run in order by bash in an empty directory holding the page's files (the
blocks whose first line is `# file: NAME`), exit 0 with `sockway` on the PATH."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT, sockway_bin

#: Pages whose blocks are run, with a line their commands print at the end.
GUIDES = {"docs/migrating-from-aws.md": "both clients got the message",
          "docs/access-control.md": "connected with a presigned URL"}

#: How long a page's commands may take together.
SCRIPT_TIMEOUT = 120

FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_LINE = re.compile(r"# file: (\S+)\n")


def blocks(page: str) -> list[tuple[str, str]]:
    """The fenced blocks of `page` as (language, text), in order."""
    return [(match.group(1), match.group(2))
            for match in FENCE.finditer((REPO_ROOT / page).read_text())]


def test_the_guides_have_blocks_to_run():
    for page in GUIDES:
        languages = [language for language, _ in blocks(page)]
        assert "toml" in languages and "sh" in languages, page


@pytest.mark.parametrize("page", GUIDES)
def test_every_toml_block_validates(page, tmp_path):
    for index, (language, text) in enumerate(blocks(page)):
        if language != "toml":
            continue
        path = tmp_path / f"block-{index}.toml"
        path.write_text(text)
        done = subprocess.run([str(sockway_bin()), "validate", "--config", str(path)],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "SOCKWAY_BACKEND_SECRET": secrets.token_urlsafe(30)})
        assert done.returncode == 0, f"{page}, block {index}:\n{text}\n{done.stderr}"


@pytest.mark.parametrize("page", GUIDES)
def test_the_commands_run(page, tmp_path):
    script = ["set -euo pipefail",
              # Whatever the commands start in the background is stopped at the end.
              'trap \'kill $(jobs -p) 2>/dev/null || true; wait\' EXIT']
    for language, text in blocks(page):
        named = FILE_LINE.match(text)
        if named:
            (tmp_path / named.group(1)).write_text(text)
        elif language == "sh":
            script.append(text)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    (bin_dir / "sockway").symlink_to(sockway_bin())
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("AWS_")}
    # `python3` is the test's own virtualenv's, which has websockets and boto3.
    venv_bin = Path(sys.executable).parent
    environment["PATH"] = f"{bin_dir}:{venv_bin}:{environment['PATH']}"
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, f"{page}:\n{done.stdout}\n{done.stderr[-6000:]}"
    # The page's processes share the pipe, so the gateway's access-log lines may be written in
    # the middle of the client's line: look for the text, not a whole line.
    assert GUIDES[page] in done.stdout, done.stdout
