"""Several concepts in one video session (issue 13 item 2): ``add_text(..., replace=False)``,
``add_exemplars(..., replace=False)``, ``add_concept``, ``remove_concept``; one trunk pass per
frame for all concepts; ids unique across concepts; per-concept association; save/restore.

What "the other concept's masklets are unchanged" means here, precisely: concepts share the
frame features (trunk and necks) and the id counter, nothing else. For every frame, the objects
of concept B in a session tracking A and B have the same masks (bit for bit), scores and boxes
as the objects of a session tracking B alone, object by object in id order (ids differ because
A's objects take some; the map between them is increasing and the same on every frame). The
same holds after ``remove_concept(A)``, for the results already stored and for a further pass.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.build import build_video_model, load_video_model
from conceptseg.errors import InputError, SessionError
from conceptseg.inference.concept import encode_concept
from conceptseg.inference.video import AssociationConfig, VideoSession
from conceptseg.inference.video.matching import Detections

CLIP = "conceptseg/assets/examples/clip.mp4"
RED, BLUE = "red object", "blue object"
# a short hotstart, so that the held-back buffer and its releases happen within the run
CFG = AssociationConfig(hotstart_delay=3, hotstart_unmatch_thresh=3, hotstart_dup_thresh=3)
FRAMES = 6


@pytest.fixture(scope="module")
def shipped():
    return load_video_model(None)


@pytest.fixture(scope="module")
def test_model():
    return build_video_model("test", seed=0)


def _session(model, phrases, **kw) -> VideoSession:
    s = VideoSession(model, CLIP, association=CFG, file_preprocessing="torchcodec", **kw)
    s.add_text(phrases[0])
    for p in phrases[1:]:
        s.add_text(p, replace=False)
    return s


def _run(model, phrases):
    s = _session(model, phrases)
    for _ in s.propagate(max_frames=FRAMES):
        pass
    return s


def _objects(res, phrase):
    """{frame: (ids, masks, scores, boxes)} of one concept's objects, ids ascending."""
    out = {}
    for t in res:
        r = res[t]
        rows = [k for k, p in enumerate(r.phrases) if p == phrase]
        out[t] = (r.obj_ids[rows].tolist(), r.masks[rows], r.scores[rows], r.boxes[rows])
    return out


def _same_masklets(a: dict, b: dict) -> None:
    """a and b (from _objects) are the same masklets up to an increasing id map."""
    assert sorted(a) == sorted(b)
    id_map = {}
    for t in a:
        ids_a, m_a, s_a, b_a = a[t]
        ids_b, m_b, s_b, b_b = b[t]
        assert len(ids_a) == len(ids_b), t
        for x, y in zip(ids_a, ids_b):
            assert id_map.setdefault(x, y) == y  # the same object on every frame
        assert torch.equal(m_a, m_b) and torch.equal(s_a, s_b) and torch.equal(b_a, b_b), t
    pairs = sorted(id_map.items())
    assert [y for _, y in pairs] == sorted(y for _, y in pairs)  # order kept


@pytest.fixture(scope="module")
def runs(shipped):
    two = _run(shipped, [RED, BLUE])
    red = _run(shipped, [RED])
    blue = _run(shipped, [BLUE])
    yield two, red, blue
    for s in (two, red, blue):
        s.close()


def test_two_concepts_ids_unique_and_each_object_keeps_its_phrase(runs):
    two, _, _ = runs
    res = two.results()
    assert two.phrases == [RED, BLUE] and list(res) == list(range(FRAMES))
    phrase_of = {}
    for t in res:
        r = res[t]
        assert len(r.phrases) == len(r) and len(set(r.obj_ids.tolist())) == len(r)
        for o, p in zip(r.obj_ids.tolist(), r.phrases):
            assert p in (RED, BLUE)
            assert phrase_of.setdefault(o, p) == p  # an id never changes concept
    assert set(phrase_of.values()) == {RED, BLUE}  # both concepts output objects
    # the JSON carries the phrase of every object
    doc = res.to_json()
    assert all(o["phrase"] == phrase_of[o["id"]] for f in doc["frames"] for o in f["objects"])


def test_each_concept_tracks_as_if_alone(runs):
    """Per-concept association: A's objects in the A+B session are A's objects of an A-only
    session (masks bit for bit), and the same for B."""
    two, red, blue = runs
    _same_masklets(_objects(two.results(), RED), _objects(red.results(), RED))
    _same_masklets(_objects(two.results(), BLUE), _objects(blue.results(), BLUE))


def _copy(model, session) -> VideoSession:
    """A new session on the same clip continuing from a copy of ``session``'s state."""
    s = VideoSession(model, CLIP, association=CFG, file_preprocessing="torchcodec")
    s.state = session.state.clone()
    return s


def test_removing_a_concept_leaves_the_other_masklets_unchanged(shipped, runs):
    two, blue = _copy(shipped, runs[0]), _copy(shipped, runs[2])
    with two, blue:
        before = _objects(two.results(), BLUE)
        # every object of the red concept, one by one: blue's masklets stay as they were
        for o in list(two.state.concepts[0].assoc.obj_ids):
            two.remove_object(o)
        _same_masklets(_objects(two.results(), BLUE), before)
        # then the concept itself (it would detect again on later frames)
        two.remove_concept(RED)
        assert two.phrases == [BLUE]
        after = two.results()
        assert all(p == BLUE for t in after for p in after[t].phrases)
        _same_masklets(_objects(after, BLUE), before)
        # tracking on: the same as a session that never had the red concept
        a = {t: r for t, r in two.propagate(start=2, max_frames=4)}
        b = {t: r for t, r in blue.propagate(start=2, max_frames=4)}
        _same_masklets(_objects(a, BLUE), _objects(b, BLUE))
        # by index too; an unknown concept is a one-line InputError
        with pytest.raises(InputError, match="no concept"):
            two.remove_concept(RED)
        two.remove_concept(0)
        assert two.phrases == [] and two.obj_ids == [] and len(two.results()[0]) == 0


def test_trunk_runs_once_per_frame_for_all_concepts(test_model):
    """The ViT trunk runs once per frame for three concepts; the detector's per-prompt part
    (fusion, decoder, heads) once per concept and frame."""
    calls = {"trunk": 0, "detector": 0}
    vit = test_model.detector.backbone.vision_backbone.trunk
    fusion = test_model.detector.transformer.encoder
    hooks = [vit.register_forward_hook(lambda *a: calls.__setitem__("trunk", calls["trunk"] + 1)),
             fusion.register_forward_hook(
                 lambda *a: calls.__setitem__("detector", calls["detector"] + 1))]
    try:
        with _session(test_model, [RED, BLUE, "green object"]) as s:
            assert calls == {"trunk": 1, "detector": 3}  # frame 0: one trunk, three prompts
            n = len([t for t, _ in s.propagate(max_frames=4)])
            # frame 0's features and detections are cached from the prompts
            assert calls == {"trunk": n, "detector": 3 * n} and n == 4
    finally:
        for h in hooks:
            h.remove()


def test_replace_true_still_starts_over(shipped, runs):
    with _copy(shipped, runs[0]) as s:
        assert s.phrases == [RED, BLUE] and len(s.results()) == FRAMES
        r = s.add_text("green object")  # default: the official behaviour
        assert s.phrases == ["green object"] and list(s.results()) == [0]
        assert r.obj_ids.tolist() == list(range(len(r)))  # ids start at 0 again
        assert all(p == "green object" for p in r.phrases)


def test_adding_a_concept_keeps_the_others_and_returns_the_whole_frame(shipped):
    with VideoSession(shipped, CLIP, association=CFG, file_preprocessing="torchcodec") as s:
        a = s.add_text(RED)
        b = s.add_text(BLUE, replace=False)
        assert b.obj_ids.tolist()[:len(a)] == a.obj_ids.tolist()
        rows = [k for k, p in enumerate(b.phrases) if p == RED]
        assert torch.equal(b.masks[rows], a.masks)
        assert b.frame_stats["num_obj_tracked"] == len(s.obj_ids)
        with pytest.raises(InputError, match="already tracked"):
            s.add_text(RED, replace=False)


def test_add_concept_and_exemplar_concepts(test_model):
    """A reusable Concept (exemplars boxed on another frame) beside a text concept, and an
    exemplar concept added with replace=False."""
    box = (60, 60, 140, 140)
    with VideoSession(test_model, CLIP, file_preprocessing="torchcodec") as ref:
        feats, _ = ref.engine.features.frame(5)
        concept = encode_concept(test_model.detector, feats, ref.size, "clip-5", text=None,
                                 exemplars=[(box, True)], name="thing")
    with _session(test_model, [RED]) as s:
        r = s.add_concept(concept, frame=0, replace=False)
        assert s.phrases == [RED, "thing"] and set(r.phrases) <= {RED, "thing"}
        assert s.state.concepts[1].detects_on(3)  # a Concept detects on every frame
        res = [r for _, r in s.propagate(max_frames=3)]
        assert all(set(x.phrases) <= {RED, "thing"} for x in res)
        ex = s.add_exemplars([box], frame=2, replace=False, text="boxed thing")
        assert s.phrases == [RED, "thing", "boxed thing"]
        assert set(ex.phrases) <= {RED, "thing", "boxed thing"}
        assert s.state.concepts[2].exemplars[2][0].shape == (1, 4)
        r2 = s.add_concept(concept)  # replace=True: only the concept is left
        assert s.phrases == ["thing"] and set(r2.phrases) <= {"thing"}
        with pytest.raises(InputError, match="Concept"):
            s.add_concept("thing")
        with pytest.raises(InputError, match="already tracked"):
            s.add_concept(concept, replace=False)


# ---------------------------------------------------------------- scripted detections


def _frames(n: int, h: int = 40, w: int = 56) -> Path:
    d = Path(tempfile.mkdtemp(prefix="frames_"))
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(d / f"{i:05d}.png")
    return d


def _scripted(model, video, **kw) -> VideoSession:
    """A session whose detector finds, per phrase: "a" the top half, "b" the bottom half,
    "ab" the top half too (the same region as "a")."""
    s = VideoSession(model, video, **kw)
    r = model.tracker_config.low_res_size
    regions = {"a": slice(0, r // 2), "b": slice(r // 2, r), "ab": slice(0, r // 2)}

    def detect(c, t, feats):
        mask = torch.full((1, r, r), -2.5)
        mask[0, regions[c.phrase]] = 2.5
        return Detections(torch.tensor([0.9]), mask, torch.tensor([[0, 0, 1, .5]]))

    s.engine.detect = detect
    return s


def test_detections_of_one_concept_never_match_another_concepts_objects(test_model):
    """Two concepts detect the same region: per-concept association gives one object per
    concept (one shared association would have matched the second detection to the first
    object), the two may overlap (non-overlap applies within a concept), and a click object
    joins the concept it is given (its phrase is None)."""
    with _scripted(test_model, _frames(4)) as s:
        s.add_text("a")
        res = s.add_text("ab", replace=False)
        assert res.obj_ids.tolist() == [0, 1] and res.phrases == ["a", "ab"]
        assert torch.equal(res.masks[0], res.masks[1]) and res.masks[0].any()
        c = s.add_clicks(None, [(10, 30)], frame=0, concept="a")
        assert c.clicked_obj_id == 2 and s.state.concepts[0].assoc.obj_ids[-1] == 2
        assert s.results()[0].phrases == ["a", "ab", None]
        with pytest.raises(SessionError, match="exactly one concept"):
            s.state.assoc
        it = s.propagate()
        next(it)
        s.add_text("b", replace=False)  # adding a concept ends the running pass
        with pytest.raises(SessionError, match="added a concept"):
            next(it)


def test_save_restore_with_two_concepts(test_model, tmp_path):
    video = _frames(8)
    with _scripted(test_model, video) as s:
        s.add_text("a")
        s.add_text("b", replace=False)
        list(s.propagate(max_frames=3))
        path = s.save_state(tmp_path / "two.pt")
        a = [(t, r.obj_ids.tolist(), r.phrases, r.masks) for t, r in s.propagate(start=3)]
    with VideoSession.restore(test_model, video, path) as s2:
        s2.engine.detect = s.engine.detect
        assert s2.phrases == ["a", "b"] and [c.key for c in s2.state.concepts] == [0, 1]
        b = [(t, r.obj_ids.tolist(), r.phrases, r.masks) for t, r in s2.propagate(start=3)]
    assert [x[:3] for x in a] == [x[:3] for x in b] and len(a) == 5
    assert {p for x in a for p in x[2]} == {"a", "b"}
    assert all(torch.equal(x[3], y[3]) for x, y in zip(a, b))


# ---------------------------------------------------------------- conceptseg track


def test_track_command_with_several_concepts(shipped, tmp_path, capsys):
    """`track --text a --text b --concept f`: one session, each object's phrase in the JSON
    and in the overlay label; a concept made with another model is refused before tracking."""
    from conceptseg.cli import main

    with VideoSession(shipped, CLIP, file_preprocessing="torchcodec") as s:
        feats, _ = s.engine.features.frame(5)
        encode_concept(shipped.detector, feats, s.size, "clip-5", text="boxed",
                       exemplars=[((60, 60, 140, 140), True)]).save(tmp_path / "b.concept")
    out, js = tmp_path / "o.mp4", tmp_path / "m.json"
    rc = main(["track", CLIP, "--text", RED, "--text", BLUE, "--concept",
               str(tmp_path / "b.concept"), "--max-frames", "3", "--file-preprocessing",
               "torchcodec", "--out", str(out), "--json", str(js)])
    assert rc == 0 and out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert all(f"'{p}':" in printed for p in (RED, BLUE, "boxed"))
    doc = __import__("json").loads(js.read_text())
    assert doc["phrases"] == [RED, BLUE, "boxed"] and len(doc["frames"]) == 3
    seen = {}
    for f in doc["frames"]:
        for o in f["objects"]:
            assert seen.setdefault(o["id"], o["phrase"]) == o["phrase"]
    assert set(seen.values()) <= {RED, BLUE, "boxed"} and seen
    # one line, exit 2: the same phrase twice, nothing to track, another model's concept
    other = tmp_path / "other.concept"
    with VideoSession(build_video_model("test", seed=0), CLIP) as s:
        feats, _ = s.engine.features.frame(0)
        encode_concept(s.model.detector, feats, s.size, None, text="x",
                       exemplars=[((10, 10, 50, 50), True)]).save(other)
    for argv, msg in ((["--text", RED, "--text", RED], "twice"), ([], "give --text"),
                      (["--concept", str(other)], "made with model")):
        capsys.readouterr()
        assert main(["track", CLIP, "--max-frames", "1", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
