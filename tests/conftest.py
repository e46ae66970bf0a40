from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "official_small"


def reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"official fixture {path} is not available on this machine")
    return path


@pytest.fixture(scope="session")
def fixture_state_dict():
    return torch.load(reference("image_model_state_dict.pt"), weights_only=True)


@pytest.fixture(scope="session")
def image_case():
    return torch.load(reference("image_case.pt"), weights_only=True)


@pytest.fixture(scope="session")
def fixture_model(fixture_state_dict):
    from conceptseg.build import load

    return load(reference("image_model_state_dict.pt"))


@pytest.fixture(scope="session")
def test_model():
    from conceptseg.build import build_model

    return build_model("test", seed=0)
