"""Print the README's Nth set-up command (1: the main job, 2: all tests), so that CI runs exactly
what the README tells a user to type. The "## Fresh machine" section holds exactly two ```bash
blocks of one line each; anything else is an error, so README and CI cannot drift apart."""

import re
import sys
from pathlib import Path

readme = Path(__file__).resolve().parents[1] / "README.md"
section = re.search(r"^## Fresh machine\n(.*?)(?=^## )", readme.read_text(), re.S | re.M)
blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1) if section else "", re.S | re.M)
commands = [block.strip() for block in blocks]
if len(commands) != 2 or any("\n" in c for c in commands):
    sys.exit(f"{readme}: the 'Fresh machine' section must hold exactly two one-line ```bash commands, "
             f"found {len(commands)}")
print(commands[int(sys.argv[1]) - 1])
