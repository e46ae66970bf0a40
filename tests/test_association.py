"""Detection <-> track association (conceptseg.inference.video.association) on hand-made masks, plus the
official fixture's per-frame outputs reproduced from our detector."""

import pytest
import torch

from conceptseg.inference.video.association import AssociationConfig, Associator
from conceptseg.inference.video.heuristics import objects_to_suppress_by_recent_occlusion
from conceptseg.inference.video.matching import (Detections, associate, nms_keep,
                                                 select_detections)
from conceptseg.inference.video.postprocess import (
    OutputBuffer, apply_object_wise_non_overlap, fill_holes_in_mask_logits, finalize_frame,
    masks_for_tracker_input, memory_encoder_masks)
from conceptseg.ops.boxes import masks_to_boxes as masks_to_boxes_xyxy

from .conftest import reference

S = 32  # low-res mask size used throughout


def rect(y0, y1, x0, x1, size=S):
    """A rectangle as +-10 logits."""
    m = torch.full((size, size), -10.0)
    m[y0:y1, x0:x1] = 10.0
    return m


def dets(*items):
    """items: (score, mask) pairs -> Detections (boxes from the masks, normalised)."""
    if not items:
        return Detections(torch.zeros(0), torch.zeros(0, S, S), torch.zeros(0, 4))
    scores = torch.tensor([s for s, _ in items], dtype=torch.float32)
    masks = torch.stack([m for _, m in items])
    boxes = masks_to_boxes_xyxy(masks > 0) / S
    return Detections(scores, masks, boxes)


def no_tracks():
    return torch.zeros(0, S, S), torch.zeros(0)


def tracks(*masks, score=5.0):
    return torch.stack(masks), torch.full((len(masks),), float(score))


A, B, C = rect(2, 12, 2, 12), rect(18, 30, 18, 30), rect(2, 10, 20, 30)


# ---------------------------------------------------------------- detections


def test_nms_keeps_highest_and_drops_overlaps_above_threshold():
    probs = torch.tensor([0.6, 0.9, 0.4, 0.8, 0.55])
    masks = torch.stack([rect(2, 12, 2, 12), rect(3, 12, 2, 12), rect(2, 12, 2, 12),
                         rect(20, 30, 20, 30), rect(20, 30, 29, 31)])
    keep = nms_keep(probs, masks, prob_threshold=0.5, iou_threshold=0.1)
    # 0 overlaps 1 (higher) -> dropped; 2 is below the prob threshold; 4 overlaps 3 at
    # IoU 10/110 = 0.09 <= 0.1 -> kept (dropped with a 0.05 threshold)
    assert keep.tolist() == [False, True, False, True, True]
    keep = nms_keep(probs, masks, prob_threshold=0.5, iou_threshold=0.05)
    assert keep.tolist() == [False, True, False, True, False]
    # ties: the higher query index wins (numpy argsort()[::-1] on a stable sort)
    tie = nms_keep(torch.tensor([0.7, 0.7]), torch.stack([A, A]), 0.5, 0.1)
    assert tie.tolist() == [False, True]


def test_select_detections_threshold_nms_and_query_order():
    cfg = AssociationConfig()
    probs = torch.tensor([0.51, 0.95, 0.5, 0.97])
    masks = torch.stack([C, A, B, rect(18, 30, 18, 29)])
    d = select_detections(probs, masks, None, cfg)
    # 0.5 is not > 0.5; detection 3 suppresses nothing else; kept in query order (not score)
    assert d.scores.tolist() == pytest.approx([0.51, 0.95, 0.97])
    assert len(select_detections(probs, masks, None, cfg, allow_new_detections=False)) == 0


# ---------------------------------------------------------------- matching and new objects


def test_new_objects_first_frame_takes_any_kept_detection():
    a = Associator(AssociationConfig())
    plan = a.step(0, dets((0.6, A), (0.9, B)), *no_tracks())
    # no track yet: every kept detection starts an object, even below new_det_thresh (0.7)
    assert plan.new_obj_ids == [0, 1] and plan.new_det_inds.tolist() == [0, 1]
    assert a.state.obj_ids == [0, 1] and a.state.max_obj_id == 1
    assert a.state.obj_id_to_score == pytest.approx({0: 0.6, 1: 0.9})
    assert plan.frame_stats == {"num_obj_tracked": 2, "num_obj_dropped": 0}
    assert masks_for_tracker_input(plan.new_obj_mask_logits, 64).shape == (2, 64, 64)


def test_matched_track_and_new_detection_threshold():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A)), *no_tracks())
    # frame 1: the track still covers A; a detection on A matches it, one on B (0.65) is not
    # confident enough, one on C (0.75) is new
    plan = a.step(1, dets((0.9, rect(2, 12, 3, 12)), (0.65, B), (0.75, C)), *tracks(A))
    assert plan.assoc.det_to_matched_trk_obj_ids[0].tolist() == [0]
    assert plan.assoc.unmatched_trk_obj_ids.tolist() == []
    assert plan.new_obj_ids == [1] and plan.new_det_inds.tolist() == [2]
    assert a.state.obj_ids == [0, 1]
    assert a.state.trk_keep_alive == {0: 30, 1: 30}  # +1 capped at max 30


def test_association_at_the_smaller_resolution():
    cfg = AssociationConfig()
    det = rect(4, 24, 4, 24, size=64)[None]
    trk = rect(2, 12, 2, 12)[None]  # same region at 32x32
    res = associate(det, torch.tensor([0.9]), trk, [7], cfg)
    assert res.ious.shape == (1, 1) and res.ious[0, 0] > 0.9
    res = associate(trk, torch.tensor([0.9]), det, [7], cfg)  # det smaller this time
    assert res.ious[0, 0] > 0.9


def test_max_num_objects_keeps_highest_scores():
    a = Associator(AssociationConfig(max_num_objects=2))
    plan = a.step(0, dets((0.8, A), (0.95, B), (0.9, C)), *no_tracks())
    # kept by decreasing score, ids in that order
    assert plan.new_det_inds.tolist() == [1, 2] and plan.new_obj_ids == [0, 1]
    assert plan.num_obj_dropped_due_to_limit == 1
    assert plan.frame_stats == {"num_obj_tracked": 2, "num_obj_dropped": 1}


# ---------------------------------------------------------------- hotstart


def test_unmatched_track_removed_within_hotstart_and_hidden_retroactively():
    cfg = AssociationConfig()
    a = Associator(cfg)
    buf = OutputBuffer(cfg.hotstart_delay, (S, S))
    released = buf.push(a.step(0, dets((0.9, A)), *no_tracks()).record)
    plan = a.step(1, dets((0.9, A), (0.9, B)), *tracks(A))  # object 1 appears on B
    released += buf.push(plan.record)
    removed_at = None
    for t in range(2, 12):
        # B is no longer detected, but the tracker keeps predicting it: unmatched
        plan = a.step(t, dets((0.9, A)), *tracks(A, B))
        released += buf.push(plan.record)
        if plan.removed_obj_ids:
            removed_at = t
            break
    assert released == []  # still inside the 15-frame delay
    # unmatched on frames 2..9: the 8th unmatched frame removes it
    assert removed_at == 9 and plan.removed_obj_ids == {1}
    assert a.state.obj_ids == [0] and a.state.obj_id_to_score[1] == -1e4
    assert plan.frame_stats["num_obj_tracked"] == 1
    out = buf.push(a.step(10, dets((0.9, A)), *tracks(A)).record, is_last=True)
    assert [o.frame_idx for o in out] == list(range(11))
    # object 1 was output nowhere, not even on frames 1..8 where it was still tracked
    assert all(o.obj_ids.tolist() == [0] for o in out)


def test_unmatched_track_outside_hotstart_is_kept():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, B)), *no_tracks())
    for t in range(1, 16):  # matched on frames 1..15
        a.step(t, dets((0.9, B)), *tracks(B))
    for t in range(16, 30):  # then unmatched for 14 frames: older than the hotstart window
        plan = a.step(t, dets(), *tracks(B))
        assert not plan.removed_obj_ids
    assert a.state.obj_ids == [0] and len(a.state.unmatched_frame_inds[0]) == 14
    assert a.state.trk_keep_alive[0] == 30 - 14  # capped at 30 while matched, -1 per frame


def test_empty_track_is_neither_matched_nor_unmatched():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A)), *no_tracks())
    for t in range(1, 12):
        plan = a.step(t, dets(), *tracks(torch.full((S, S), -1024.0)))
        assert plan.assoc.empty_trk_obj_ids.tolist() == [0]
        assert not plan.removed_obj_ids
    assert a.state.obj_ids == [0]


def test_keep_alive_suppression_when_enabled():
    cfg = AssociationConfig(suppress_unmatched_only_within_hotstart=False, init_trk_keep_alive=2,
                            hotstart_delay=0, hotstart_unmatch_thresh=0, hotstart_dup_thresh=0)
    a = Associator(cfg)
    a.step(0, dets((0.9, A)), *no_tracks())
    p1 = a.step(1, dets(), *tracks(A))
    p2 = a.step(2, dets(), *tracks(A))
    assert p1.record.suppressed_obj_ids == set() and p2.record.suppressed_obj_ids == {0}
    out = OutputBuffer(0, (S, S)).push(p2.record)
    assert out[0].obj_ids.tolist() == []  # hidden on that frame, still tracked
    assert a.state.obj_ids == [0]


def test_duplicate_masklet_removed_after_sharing_a_detection():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A)), *no_tracks())
    # frame 1: a second, nearby object appears (IoU with A < 0.1 so it is new)
    a2 = rect(2, 12, 11, 21)
    plan = a.step(1, dets((0.9, A), (0.9, a2)), *tracks(A))
    assert plan.new_obj_ids == [1]
    removed = None
    for t in range(2, 14):
        # one detection now covers both masklets: both match it (IoU >= 0.1)
        big = rect(2, 12, 2, 21)
        plan = a.step(t, dets((0.9, big)), *tracks(A, a2))
        assert plan.assoc.det_to_matched_trk_obj_ids[0].tolist() == [0, 1]
        if plan.removed_obj_ids:
            removed = (t, plan.removed_obj_ids)
            break
    # the later masklet (1) is the duplicate; 8 shared frames: 2..9
    assert removed == (9, {1})
    assert a.state.overlap_pair_to_frame_inds[(0, 1)] == list(range(2, 10))
    assert a.state.obj_ids == [0]


# ---------------------------------------------------------------- reconditioning


def test_reconditioning_trigger():
    cfg = AssociationConfig()
    a = Associator(cfg)
    a.step(0, dets((0.9, A), (0.9, B)), *no_tracks())
    for t in range(1, 16):
        plan = a.step(t, dets((0.9, A), (0.9, B)), *tracks(A, B))
        assert plan.recondition == {}
    assert plan.assoc.trk_id_to_max_iou_high_conf_det == {0: 0, 1: 1}
    # frame 16 (16 % 16 == 0): high-confidence (>= 0.8), high-IoU (>= 0.8) detections re-seed
    # their tracks when the track's object-score logit > 0.8
    masks, _ = tracks(A, B)
    plan = a.step(16, dets((0.85, A), (0.79, B)), masks, torch.tensor([0.81, 3.0]))
    assert plan.assoc.trk_id_to_max_iou_high_conf_det == {0: 0}  # B's det score < 0.8
    assert plan.recondition == {0: 0}
    a2 = Associator(cfg)
    a2.step(0, dets((0.9, A)), *no_tracks())
    for t in range(1, 16):
        a2.step(t, dets((0.9, A)), *tracks(A))
    plan = a2.step(16, dets((0.9, A)), A[None], torch.tensor([0.8]))  # logit not > 0.8
    assert plan.recondition == {}
    # periodic reconditioning never overrides the output mask
    assert plan.reconditioned_obj_ids == set()


# ---------------------------------------------------------------- occlusion suppression


def test_occlusion_suppression_of_most_recently_occluded():
    binary = torch.stack([A, A, B]) > 0
    last = torch.tensor([3, 5, -1])
    sup = objects_to_suppress_by_recent_occlusion(binary, last, 0.7)
    assert sup.tolist() == [False, True, False]
    # the other one was never occluded: nothing is suppressed
    assert not objects_to_suppress_by_recent_occlusion(binary, torch.tensor([-1, 5, -1]), 0.7).any()
    assert objects_to_suppress_by_recent_occlusion(binary, last, 0.7, reverse=True).tolist() == \
        [True, False, False]


def test_occlusion_suppression_in_step_hides_the_object():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A), (0.9, B)), *no_tracks())
    empty = torch.full((S, S), -10.0)
    # frame 1: object 0 is occluded (empty), frame 2: object 1 is occluded
    a.step(1, dets((0.9, B)), *tracks(empty, B))
    a.step(2, dets((0.9, A)), *tracks(A, empty))
    assert a.state.obj_id_to_last_occluded == {0: 1, 1: 2}
    # frame 3: both masks cover the same region; 1 was occluded more recently -> suppressed
    plan = a.step(3, dets((0.9, A)), *tracks(A, rect(2, 12, 2, 13)))
    assert plan.suppressed_by_occlusion.tolist() == [False, True]
    assert (plan.track_mask_logits[1] == -10).all()
    assert a.state.obj_id_to_last_occluded == {0: 1, 1: 3}
    out = finalize_frame(plan.record, (S, S))
    assert out.obj_ids.tolist() == [0]


# ---------------------------------------------------------------- outputs


def test_non_overlap_constraint_and_boxes_from_final_masks():
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A), (0.9, C)), *no_tracks())
    masks, _ = tracks(rect(2, 12, 2, 12), rect(2, 12, 6, 30))
    plan = a.step(1, dets((0.9, A), (0.9, C)), masks, torch.tensor([1.0, 2.0]))
    out = finalize_frame(plan.record, (64, 64))  # upsampled x2
    assert out.obj_ids.tolist() == [0, 1]
    m0, m1 = out.masks
    assert not (m0 & m1).any()  # the overlap went to object 1 (higher tracker score)
    assert m0[:, 12:].sum() == 0 and m1[4:24, 12:24].all()
    # boxes come from the final masks (issue 17): object 0's box shrinks to what it keeps
    # (officially it kept its box from before the constraint)
    assert out.boxes_xywh[0].tolist() == pytest.approx([4 / 64, 4 / 64, 7 / 64, 19 / 64])
    assert out.boxes[0].tolist() == [4, 4, 12, 24]
    # scores: object-wise constraint with per-object scores; score <= 0 keeps nothing
    mm = torch.stack([A, B]) > 0
    assert apply_object_wise_non_overlap(mm, torch.tensor([0.0, 0.5]))[0].sum() == 0
    assert torch.equal(apply_object_wise_non_overlap(mm[:1], torch.tensor([0.0])), mm[:1])


def test_output_probs_and_boxes_normalised():
    a = Associator(AssociationConfig())
    plan = a.step(0, dets((0.93, rect(0, 8, 4, 12))), *no_tracks())
    out = finalize_frame(plan.record, (S, 2 * S))
    assert out.obj_ids.dtype == torch.int64 and out.scores.tolist() == pytest.approx([0.93])
    # x: 8..23 of 64, y: 0..7 of 32 (inclusive pixel indices, no +1)
    assert out.boxes_xywh[0].tolist() == pytest.approx([8 / 64, 0.0, 15 / 64, 7 / 32])
    assert out.masks.shape == (1, S, 2 * S)


def test_hole_filling_official_semantics():
    m = rect(4, 20, 4, 20)
    m[10:12, 10:12] = -5.0  # a 4-pixel hole
    m[0:2, 25:27] = 3.0  # a 4-pixel sprinkle
    m[28:32, 0:2] = -1.0  # (background anyway)
    out = fill_holes_in_mask_logits(m[None], 16)[0]
    assert (out[10:12, 10:12] == 0.1).all()  # filled with +0.1
    assert (out[0:2, 25:27] == -0.1).all()  # removed with -0.1
    assert torch.equal(out[4:10, 4:20], m[4:10, 4:20])
    # background components touching the border are filled too (unlike ops.masks.fill_holes)
    corner = torch.full((S, S), 5.0)
    corner[0:3, 0:3] = -5.0
    assert (fill_holes_in_mask_logits(corner[None], 16)[0][0:3, 0:3] == 0.1).all()
    # a lone small object is not a sprinkle (threshold min(area // 2, max_area))
    tiny = rect(5, 8, 5, 8)
    assert torch.equal(fill_holes_in_mask_logits(tiny[None], 16)[0], tiny)
    assert torch.equal(fill_holes_in_mask_logits(m[None], 0)[0], m)


def test_new_object_output_has_holes_filled():
    m = rect(4, 20, 4, 20)
    m[10:12, 10:12] = -5.0
    a = Associator(AssociationConfig())
    plan = a.step(0, dets((0.9, m)), *no_tracks())
    out = finalize_frame(plan.record, (S, S))
    assert out.masks[0, 10:12, 10:12].all()
    # track masks are hole-filled too (before association and outputs)
    plan = a.step(1, dets((0.9, m)), *tracks(m))
    assert (plan.track_mask_logits[0, 10:12, 10:12] > 0).all()


def test_hotstart_buffer_release_schedule():
    cfg = AssociationConfig(hotstart_delay=3, hotstart_unmatch_thresh=2, hotstart_dup_thresh=2)
    a = Associator(cfg)
    buf = OutputBuffer(cfg.hotstart_delay, (S, S))
    got = []
    got.append([o.frame_idx for o in buf.push(a.step(0, dets((0.9, A)), *no_tracks()).record)])
    for t in range(1, 6):
        rec = a.step(t, dets((0.9, A)), *tracks(A)).record
        got.append([o.frame_idx for o in buf.push(rec, is_last=(t == 5))])
    assert got == [[], [], [0], [1], [2], [3, 4, 5]]
    # no delay: released at once
    assert [o.frame_idx for o in OutputBuffer(0, (S, S)).push(rec)] == [5]


def test_memory_encoder_masks_shrinkage_suppression():
    big = rect(0, 20, 0, 20)
    small = torch.full((S, S), -10.0)
    small[0:20, 0:20] = 5.0  # entirely inside `big`, with lower logits: loses every pixel
    other = rect(24, 30, 24, 30)
    high, obj = memory_encoder_masks(torch.stack([big, small, other]), (64, 64))
    assert high.shape == (3, 64, 64)
    assert (high[1] <= -10).all() and (high[0] > 0).any() and (high[2] > 0).any()
    assert obj.tolist() == [10.0, -10.0, 10.0]


def test_config_variants():
    off = AssociationConfig.without_heuristics()
    assert off.hotstart_delay == 0 and off.recondition_every_nth_frame == 0
    assert AssociationConfig.official() == AssociationConfig()
    assert AssociationConfig().object_limit == 10000
    with pytest.raises(ValueError):
        AssociationConfig(hotstart_delay=4, hotstart_unmatch_thresh=8)


def test_tracker_output_count_is_checked():
    a = Associator()
    with pytest.raises(ValueError, match="tracked"):
        a.step(0, dets((0.9, A)), *tracks(A))


# ---------------------------------------------------------------- official fixture


def test_fixture_pattern_one_new_id_per_frame():
    """ids 0,1,2,3 on frames 0..3 with num_obj_tracked 1..4: the old masklets come back empty
    from the tracker, so every frame's detection is new and only the newest is output."""
    cfg = AssociationConfig()
    a = Associator(cfg)
    buf = OutputBuffer(cfg.hotstart_delay, (48, 64))
    a.step(0, dets((0.98, A)), *no_tracks())  # add_prompt on frame 0
    released = buf.push(a.step(0, dets((0.98, A)), *tracks(A)).record)  # propagation, frame 0
    empty = torch.full((S, S), -1024.0)
    for t in (1, 2, 3):
        n = a.state.num_objects
        rec = a.step(t, dets((0.98, A)), empty.expand(n, S, S).clone(), torch.full((n,), -3.0)).record
        released += buf.push(rec, is_last=(t == 3))
    assert [o.obj_ids.tolist() for o in released] == [[0], [1], [2], [3]]
    assert [o.frame_stats["num_obj_tracked"] for o in released] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def fixture_detections():
    """Our detector on the official video fixture (video detector scoring: presence folded
    into the logits, clamped to +-10)."""
    from conceptseg.build import load
    from conceptseg.ops.boxes import inverse_sigmoid
    from conceptseg.text.tokenizer import ClipTokenizer

    case = torch.load(reference("video_case.pt"), weights_only=True)
    model = load(reference("video_model_state_dict.pt"))
    frames = case["video_input_fp16"].float()
    out = []
    with torch.no_grad():
        text = model.encode_text(ClipTokenizer()([case["prompt"]]))
        for t in range(frames.shape[0]):
            o = model.forward_grounding(model.encode_image(frames[t:t + 1]), text)
            joint = o["pred_logits"].sigmoid() * o["presence_logit_dec"].sigmoid().unsqueeze(2)
            logits = inverse_sigmoid(joint).clamp(-10.0, 10.0)
            out.append((logits[0, :, 0].sigmoid(), o["pred_masks"][0], o["pred_boxes_xyxy"][0]))
    return case, out


def test_official_fixture_outputs_from_our_detector(fixture_detections):
    case, det_out = fixture_detections
    cfg = AssociationConfig()
    h, w = case["add_prompt_frame0"]["out_binary_masks"].shape[-2:]

    def check(ours, ref):
        assert ours.obj_ids.tolist() == ref["out_obj_ids"].tolist()
        assert ours.scores.tolist() == pytest.approx(ref["out_probs"].tolist(), abs=1e-6)
        assert torch.allclose(ours.boxes_xywh, ref["out_boxes_xywh"], atol=1e-6)
        assert torch.equal(ours.masks, ref["out_binary_masks"])
        assert ours.frame_stats == {k: int(v) for k, v in ref["frame_stats"].items()}

    # add_prompt on frame 0: no track, the kept detection (NMS leaves one) becomes object 0
    a = Associator(cfg)
    plan = a.step(0, select_detections(*det_out[0], cfg), *no_tracks())
    check(finalize_frame(plan.record, (h, w)), case["add_prompt_frame0"])

    # propagation: frame 0 re-runs with the prompt's object (its tracker mask is not in the
    # fixture: we feed the detection mask as the conditioning output), frames 1..3 with
    # empty tracker masks for every existing object
    buf = OutputBuffer(cfg.hotstart_delay, (h, w))
    cond = torch.where(plan.new_obj_mask_logits > 0, 10.0, -10.0)
    released = buf.push(a.step(0, select_detections(*det_out[0], cfg), cond,
                               torch.tensor([10.0])).record)
    for t in (1, 2, 3):
        n = a.state.num_objects
        lr = det_out[t][1].shape[-1]
        rec = a.step(t, select_detections(*det_out[t], cfg), torch.full((n, lr, lr), -1024.0),
                     torch.full((n,), -5.0)).record
        released += buf.push(rec, is_last=(t == 3))
    assert [o.frame_idx for o in released] == [0, 1, 2, 3]
    assert released[0].obj_ids.tolist() == [0]
    for t in (1, 2, 3):
        check(released[t], case["propagate_forward"][t])


def test_phantom_objects_emptied_by_non_overlap_have_no_box():
    """Issue 17: an object losing every pixel to the non-overlap step kept another object's
    box. Now its box is all zeros, it is marked empty and the JSON lists it under "empty"."""
    a = Associator(AssociationConfig())
    a.step(0, dets((0.9, A), (0.9, C)), *no_tracks())
    masks, _ = tracks(rect(2, 12, 2, 12), rect(0, 14, 0, 14))  # object 1 covers object 0
    plan = a.step(1, dets((0.9, A)), masks, torch.tensor([1.0, 2.0]))
    out = finalize_frame(plan.record, (S, S))
    assert out.obj_ids.tolist() == [0, 1]
    assert out.masks[0].sum() == 0 and out.empty.tolist() == [True, False]
    assert out.boxes[0].tolist() == [0, 0, 0, 0] and out.boxes_xywh[0].tolist() == [0, 0, 0, 0]
    assert out.boxes[1].tolist() == [0, 0, 14, 14]
    doc = out.to_json()
    assert [o["id"] for o in doc["objects"]] == [1] and doc["empty"] == [0]
    assert "tensor" not in repr(out) and len(repr(out)) < 200
