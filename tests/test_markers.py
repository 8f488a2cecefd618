"""Test-suite habits that keep `pytest -m "not slow"` a quick loop and `pytest -m cuda` the GPU checks: every test
skipped for want of CUDA carries the declared `cuda` marker (next to its skipif), so a GPU run can select them all."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CUDA_SKIP = re.compile(r"skipif\(\s*not torch\.cuda\.is_available\(\)")


def unmarked_cuda_skips(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    return [f"{name}:{i + 1}: {line.strip()}" for i, line in enumerate(lines) if CUDA_SKIP.search(line)
            and not any("mark.cuda" in lines[j] for j in range(max(0, i - 2), i + 1))]


def test_every_cuda_skip_carries_the_cuda_marker():
    missing = [hit for path in sorted(TESTS.glob("*.py")) if path.name != Path(__file__).name
               for hit in unmarked_cuda_skips(path.read_text(encoding="utf-8"), path.name)]
    assert not missing, "add @pytest.mark.cuda (or marks=[pytest.mark.cuda, ...]) to:\n" + "\n".join(missing)


def test_the_check_finds_an_unmarked_skip():
    text = '@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")\ndef test_x(): ...'
    assert unmarked_cuda_skips(text, "t.py") and not unmarked_cuda_skips("@pytest.mark.cuda\n" + text, "t.py")
