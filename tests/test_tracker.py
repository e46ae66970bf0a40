"""The SAM 3 tracker: official checkpoint layout, parity with transformers' port, memory bank.

Parity with ``transformers.Sam3TrackerVideoModel`` (random weights, the ``test`` preset, fp32;
measured on torch 2.13 CPU, max abs): SAM heads masks 4.7e-7, IoU 6e-8, object score 0,
pointer 9.3e-8; memory-encoder core 9.5e-7 (stored bfloat16 memories within one bf16 rounding
step); memory conditioning (frame / pointer choice + tokens + attention) 7.2e-7; neck 0.

Known, intended differences from transformers (we follow the official code):
- the memory encoder resizes the mask *after* sigmoid / binarisation (official); transformers
  resizes the logits first, so it is compared with masks already at the encoder's size;
- transformers takes object pointers from *all* conditioning frames, the official code only from
  the ``max_cond_frames_in_attn`` selected ones, so conditioning is compared with <= 4 of them;
- transformers has no memory selection (SAM2Long filtering): compared with it switched off;
- transformers' ``_use_mask_as_output`` resizes the mask to image_size first (the official code
  feeds the 4x-size mask straight to ``mask_downsample``): not compared.
"""

from __future__ import annotations

import pytest
import torch

from conceptseg.tracker.bank import FrameMemory, MemoryBank, memory_score
from conceptseg.checkpoint.hf_tracker import hf_to_official, official_to_hf
from conceptseg.checkpoint.load import load_tracker
from conceptseg.checkpoint.official import neck_state_dict, tracker_state_dict
from conceptseg.tracker.config import (fixture_tracker_config, get_tracker_config,
                                       sam3_tracker_config)
from conceptseg.tracker.neck import TrackerNeck
from conceptseg.tracker.tracker import NO_OBJ_SCORE, Tracker, TrackerFeatures

from .conftest import REFERENCE, reference

TOL = 1e-4


def err(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Noise on every parameter that init leaves constant (norms, biases, zero embeddings)."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.dim() == 1 or p.numel() == 1 or p.std() == 0:
            p.add_(torch.randn(p.shape, generator=gen) * std)


def random_features(cfg, batch=1, seed=0) -> TrackerFeatures:
    gen = torch.Generator().manual_seed(seed)
    g, d = cfg.grid, cfg.d_model
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return TrackerFeatures(r(batch, d, g, g), r(batch, d, g, g),
                           (r(batch, d // 8, 4 * g, 4 * g), r(batch, d // 4, 2 * g, 2 * g)))


# -- official layout ---------------------------------------------------------------------------
def _keys_tsv():
    path = REFERENCE.parent / "sam3_video_keys.tsv"
    if not path.exists():
        pytest.skip(f"{path} is not available on this machine")
    rows = [line.rstrip("\n").split("\t") for line in path.open()][1:]  # header
    return {r[0]: tuple(int(x) for x in r[1].strip("[]").split(",") if x.strip()) for r in rows}


def test_full_size_keys_and_shapes_equal_the_official_checkpoint():
    keys = _keys_tsv()
    cfg = sam3_tracker_config()
    ours = {"tracker." + k: tuple(v.shape) for k, v in Tracker(cfg).state_dict().items()}
    ours.update({"detector.backbone.vision_backbone." + k: tuple(v.shape)
                 for k, v in TrackerNeck(cfg).state_dict().items()})
    official = {k: s for k, s in keys.items()
                if k.startswith("tracker.") or ".sam2_convs." in k}
    assert len(official) == 309 + 22
    assert ours == official


def test_fixture_video_checkpoint_loads_strictly():
    sd = torch.load(reference("video_model_state_dict.pt"), weights_only=True)
    cfg = fixture_tracker_config()
    tracker, neck = load_tracker(sd, cfg)  # strict
    assert len(tracker_state_dict(sd)) == 257 and len(neck_state_dict(sd)) == 22
    for k, v in tracker.state_dict().items():
        assert torch.equal(v, sd["tracker." + k]), k
    # one prompted frame and a few tracked frames run and stay finite
    with torch.no_grad():
        levels, pos = neck(torch.randn(1, cfg.vit_dim, cfg.grid, cfg.grid))
        assert [lv.shape[-1] for lv in levels] == [32, 16, 8]
        feats = tracker.prepare_features(levels, pos)
        bank = tracker.new_bank(num_frames=4)
        out = tracker.track(feats, bank, 0, box=torch.tensor([[10.0, 20.0, 80.0, 90.0]]))
        for t in range(1, 4):
            out = tracker.track(feats, bank, t)
            assert out.multimasks.shape == (1, 3, 32, 32) and torch.isfinite(out.masks).all()


def test_hf_key_conversion_round_trip():
    for cfg in (get_tracker_config("test"), fixture_tracker_config(), sam3_tracker_config()):
        sd = {**Tracker(cfg).state_dict(), **TrackerNeck(cfg).state_dict()}
        hf = official_to_hf(sd, prefix="tracker_model.")
        assert "tracker_model.prompt_encoder.point_embed.weight" in hf
        assert any(k.startswith("tracker_neck.fpn_layers.") for k in hf)
        back = hf_to_official(hf, prefix="tracker_model.")
        assert set(back) == set(sd)
        assert all(torch.equal(back[k], sd[k]) for k in sd)


# -- transformers parity -----------------------------------------------------------------------
def hf_tracker_config(cfg):
    """``transformers.Sam3TrackerVideoConfig`` with the sizes of a :class:`TrackerConfig`."""
    from transformers import Sam3TrackerVideoConfig
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    g, d = cfg.grid, cfg.d_model
    vit = Sam3ViTConfig(hidden_size=cfg.vit_dim, intermediate_size=2 * cfg.vit_dim,
                        num_hidden_layers=1, num_attention_heads=2, image_size=cfg.image_size,
                        patch_size=cfg.backbone_stride, window_size=g, global_attn_indexes=[0],
                        pretrain_image_size=cfg.image_size)
    vision = Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=d,
                              scale_factors=list(cfg.neck_scales),
                              backbone_feature_sizes=[[4 * g] * 2, [2 * g] * 2, [g, g]])
    return Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=d, image_size=cfg.image_size,
                                   patch_size=cfg.backbone_stride,
                                   mask_input_channels=cfg.mask_in_chans),
        mask_decoder_config=dict(
            hidden_size=d, mlp_dim=cfg.sam_mlp_dim, num_hidden_layers=cfg.sam_depth,
            num_attention_heads=cfg.sam_heads, attention_downsample_rate=cfg.sam_attn_downsample,
            num_multimask_outputs=cfg.num_multimask_outputs, iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.stability_delta,
            dynamic_multimask_stability_thresh=cfg.stability_thresh),
        num_maskmem=cfg.num_maskmem, max_object_pointers_in_encoder=cfg.max_obj_ptrs,
        max_cond_frame_num=cfg.max_cond_frames_in_attn,
        multimask_output_in_sam=cfg.multimask_output_in_sam,
        multimask_min_pt_num=cfg.multimask_min_pt_num,
        multimask_max_pt_num=cfg.multimask_max_pt_num,
        multimask_output_for_tracking=cfg.multimask_output_for_tracking,
        memory_attention_hidden_size=d, memory_attention_num_layers=cfg.memory_layers,
        memory_attention_num_attention_heads=cfg.memory_heads,
        memory_attention_feed_forward_hidden_size=cfg.memory_ffn_dim,
        memory_attention_rope_feat_sizes=[g, g], memory_encoder_hidden_size=d,
        memory_encoder_output_channels=cfg.mem_dim, mask_downsampler_embed_dim=d,
        mask_downsampler_stride=cfg.mask_downsampler_stride,
        mask_downsampler_total_stride=cfg.mask_downsampler_total_stride,
        memory_fuser_num_layers=cfg.fuser_layers, memory_fuser_embed_dim=d,
        memory_fuser_intermediate_dim=cfg.fuser_mlp_ratio * d,
        memory_fuser_kernel_size=cfg.fuser_kernel, memory_fuser_padding=cfg.fuser_kernel // 2,
        image_size=cfg.image_size)


def hf_copy(ours: Tracker):
    """transformers' tracker holding our weights (strict)."""
    pytest.importorskip("transformers")
    from transformers import Sam3TrackerVideoModel

    hf = Sam3TrackerVideoModel(hf_tracker_config(ours.cfg), remove_vision_encoder=True).eval()
    missing, unexpected = hf.load_state_dict(official_to_hf(ours.state_dict()), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return hf


@pytest.fixture(scope="module", params=[5.0, -5.0], ids=["present", "absent"])
def pair(request):
    """(ours, transformers) with the same random weights; the object-score bias is shifted so
    that the object is predicted present (masks and pointer used) or absent."""
    torch.manual_seed(0)
    ours = Tracker(get_tracker_config("test")).eval()
    perturb_(ours)
    with torch.no_grad():
        ours.sam_mask_decoder.pred_obj_score_head.layers[2].bias.add_(request.param)
    return ours, hf_copy(ours)


PROMPTS = {
    "none": {},
    "point": dict(points=[[[30.0, 40.0]]], labels=[[1]]),
    "three_points": dict(points=[[[30.0, 40.0], [80.0, 20.0], [60.0, 90.0]]], labels=[[1, 0, 1]]),
    "box": dict(box=[[20.0, 30.0, 90.0, 100.0]]),
    "mask_and_point": dict(points=[[[30.0, 40.0]]], labels=[[1]], mask_input=True),
}


@pytest.mark.parametrize("stable", [False, True], ids=["fallback", "stable"])
@pytest.mark.parametrize("name", list(PROMPTS))
def test_sam_heads_match_transformers(pair, name, stable):
    ours, hf = pair
    cfg = ours.cfg
    f = random_features(cfg)
    kw = {k: torch.tensor(v) for k, v in PROMPTS[name].items() if k != "mask_input"}
    if PROMPTS[name].get("mask_input"):
        kw["mask_input"] = torch.randn(1, 1, cfg.low_res_size, cfg.low_res_size,
                                       generator=torch.Generator().manual_seed(3))
    hkw = {}
    if "points" in kw:
        hkw.update(input_points=kw["points"][:, None], input_labels=kw["labels"][:, None])
    if "box" in kw:
        hkw["input_boxes"] = kw["box"][:, None]
    if "mask_input" in kw:
        hkw["input_masks"] = kw["mask_input"]
    n_pts = kw["points"].shape[1] if "points" in kw else 2 if "box" in kw else 0
    multimask = ours.use_multimask(n_pts)
    scale = 1000.0 if stable else 1.0  # a sharp token-0 mask is "stable": no fallback
    layer_o = ours.sam_mask_decoder.output_hypernetworks_mlps[0].layers[2]
    layer_h = hf.mask_decoder.output_hypernetworks_mlps[0].proj_out
    saved = [layer.weight.detach().clone() for layer in (layer_o, layer_h)]
    with torch.no_grad():
        for layer in (layer_o, layer_h):
            layer.weight.mul_(scale)
        try:
            out = ours.predict_masks(f, **kw)
            h = hf._single_frame_forward(image_embeddings=[*f.high_res, ours.no_memory(f)],
                                         multimask_output=multimask, **hkw)
            if not multimask:  # check which branch the dynamic selection took
                sparse, dense = ours.sam_prompt_encoder(
                    *(_coords(kw) if n_pts else (torch.zeros(1, 1, 2), torch.full((1, 1), -1))),
                    kw.get("mask_input"), 1)
                m, *_ = ours.sam_mask_decoder.predict_all(
                    ours.no_memory(f), ours.sam_prompt_encoder.dense_pe(), sparse, dense,
                    f.high_res)
                is_stable = ours.sam_mask_decoder.stability(m[:, :1]) >= cfg.stability_thresh
                assert bool(is_stable) == stable
        finally:
            for layer, w in zip((layer_o, layer_h), saved):
                layer.weight.copy_(w)
    assert out.multimasks.shape == (1, 3 if multimask else 1, cfg.low_res_size, cfg.low_res_size)
    assert err(out.masks, h.pred_masks.reshape(out.masks.shape)) <= TOL * scale
    assert err(out.ious, h.iou_scores.reshape(out.ious.shape)) <= TOL
    assert err(out.object_score_logits, h.object_score_logits.reshape(1, 1)) <= TOL
    assert err(out.obj_ptr, h.object_pointer.reshape(out.obj_ptr.shape)) <= TOL
    if out.object_score_logits.item() <= 0:
        assert (out.multimasks == NO_OBJ_SCORE).all()
        assert torch.equal(out.obj_ptr, ours.no_obj_ptr.detach())


def _coords(kw):
    pts, labs = [], []
    if "box" in kw:
        pts.append(kw["box"].reshape(1, 2, 2))
        labs.append(torch.tensor([[2, 3]]))
    if "points" in kw:
        pts.append(kw["points"])
        labs.append(kw["labels"])
    return torch.cat(pts, 1), torch.cat(labs, 1)


@pytest.mark.parametrize("from_points", [False, True])
def test_memory_encoder_matches_transformers(pair, from_points):
    ours, hf = pair
    cfg = ours.cfg
    gen = torch.Generator().manual_seed(4)
    s = cfg.mask_interpol_size  # transformers resizes before the sigmoid: compare at this size
    masks = torch.randn(2, 1, s, s, generator=gen) * 5
    scores = torch.tensor([[3.0], [-2.0]])  # the second object is absent
    f2 = random_features(cfg, seed=5).expand(2)
    with torch.no_grad():
        mem, pos = ours.encode_memory(f2, masks, scores, from_points)
        h_mem, h_pos = hf._encode_new_memory(f2.image.flatten(2).permute(2, 0, 1), masks,
                                             scores[:, :, None], from_points)
        p = (masks > 0).float() if from_points else masks.sigmoid()
        core = ours.maskmem_backbone(f2.image, p * 20 - 10)[0]
        h_core = hf.memory_encoder(f2.image, p * 20 - 10)[0]
    h_mem = h_mem.permute(1, 2, 0).reshape(mem.shape).float()  # stored in bfloat16
    h_pos = h_pos.permute(1, 2, 0).reshape(pos.shape)
    assert err(core, h_core) <= TOL
    assert err(pos, h_pos) <= TOL
    # within one bfloat16 rounding step (relative 2^-8)
    assert ((mem - h_mem).abs() <= 2 ** -8 * h_mem.abs() + 1e-5).all()
    # the absent object carries no_obj_embed_spatial
    plain = ours.maskmem_backbone(f2.image, p * 20 - 10)[0]
    extra = (mem - plain)[1].mean((-1, -2))
    assert err(extra, ours.no_obj_embed_spatial[0]) <= TOL and err(mem[0], plain[0]) == 0


def _fill(ours, bank, session, cond, tracked, batch=1, seed=0):
    """The same random memories in our bank and in a transformers session (object 0)."""
    cfg = ours.cfg
    g = cfg.grid
    gen = torch.Generator().manual_seed(seed)
    pos = ours.maskmem_backbone.position(g, g, torch.zeros(1))[None].expand(batch, -1, -1, -1)
    obj = session.obj_id_to_idx(1) if session is not None else None
    for t in sorted(cond + tracked):
        mem = torch.randn(batch, cfg.mem_dim, g, g, generator=gen).to(torch.bfloat16)
        ptr = torch.randn(batch, cfg.d_model, generator=gen)
        is_cond = t in cond
        bank.add(t, FrameMemory(ptr, torch.ones(batch, 1), mem, pos), cond=is_cond)
        if session is not None:
            key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
            session.output_dict_per_obj[obj][key][t] = {
                "maskmem_features": mem.flatten(2).permute(2, 0, 1),
                "maskmem_pos_enc": pos.flatten(2).permute(2, 0, 1), "object_pointer": ptr}
    return obj


@pytest.mark.parametrize("num_frames,frame,cond,tracked", [
    (12, 10, [0, 3], [1, 2, 4, 5, 6, 7, 8, 9]),  # all pointers, 6 recent memories
    (40, 30, [0, 12, 20], list(range(1, 30))),  # pointer limit (15 tracked frames) reached
    (20, 5, [0, 8], [1, 2, 3, 4]),  # a future conditioning frame (memory, no pointer)
    (6, 5, [0], [1, 2, 3, 4]),  # short video: pointer offsets normalised by 5
])
def test_memory_conditioning_matches_transformers(pair, num_frames, frame, cond, tracked):
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoInferenceSession)

    ours, hf = pair
    bank = ours.new_bank(num_frames)
    bank.use_memory_selection = False  # not implemented by transformers
    session = Sam3TrackerVideoInferenceSession(video=torch.zeros(num_frames, 3, 2, 2),
                                               dtype=torch.float32)
    obj = _fill(ours, bank, session, cond, tracked)
    f = random_features(ours.cfg, seed=7)
    with torch.no_grad():
        a = ours.condition_on_memory(f, bank, frame)
        b = hf._prepare_memory_conditioned_features(
            session, frame, obj, False, f.image.flatten(2).permute(2, 0, 1),
            f.pos.flatten(2).permute(2, 0, 1), num_frames)
    assert err(a, b) <= TOL
    sel = bank.select(frame)
    assert sel.memory_frames[: len(cond)] == cond
    assert len(sel.memory_frames) <= len(cond) + ours.cfg.num_maskmem - 1


def test_tracker_neck_matches_transformers():
    pytest.importorskip("transformers")
    from transformers.models.sam3.modeling_sam3 import Sam3VisionNeck

    cfg = get_tracker_config("test")
    torch.manual_seed(0)
    neck = TrackerNeck(cfg).eval()
    perturb_(neck)
    hf = Sam3VisionNeck(hf_tracker_config(cfg).vision_config).eval()
    hf_sd = {k[len("tracker_neck."):]: v for k, v in official_to_hf(neck.state_dict()).items()}
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    assert not missing and not unexpected
    x = torch.randn(1, cfg.vit_dim, cfg.grid, cfg.grid)
    with torch.no_grad():
        levels, pos = neck(x)
        h_levels, h_pos = hf(x)
    assert len(levels) == 3
    for a, b in zip(levels + pos, list(h_levels[:3]) + list(h_pos[:3])):
        assert err(a, b) <= TOL


# -- memory bank -------------------------------------------------------------------------------
def _frame(score: float | None, batch: int = 1) -> FrameMemory:
    return FrameMemory(torch.zeros(batch, 4), torch.ones(batch, 1), torch.zeros(batch, 2, 1, 1),
                       torch.zeros(batch, 2, 1, 1), eff_iou_score=score)


def test_memory_selection_rules():
    bank = MemoryBank(num_frames=100)
    bank.add(0, _frame(None), cond=True, prune=False)
    scores = {t: (0.5 if t % 3 else 0.0) for t in range(1, 40)}  # every 3rd frame is unusable
    for t, s in scores.items():
        bank.add(t, _frame(s), prune=False)
    valid = bank.selectable_frames(40)
    good = [t for t in range(39, 0, -1) if scores[t] > 0.01][:15][::-1]
    assert valid == good + [39]  # 39 is always appended (it is a multiple of 3: score 0)
    sel = bank.select(40)
    assert sel.memory_frames == [0] + valid[-6:]
    # pointers: the conditioning frame at its distance, then ranks 1.. in the list; the oldest
    # listed frame gives no pointer
    assert [o for o, _, _ in sel.pointers] == [40] + list(range(1, len(valid)))
    assert sel.pointer_frames == [0] + valid[::-1][:-1]
    assert sel.max_ptr_offset == 15
    # frame 0 is never scanned; at frame 1 only the must-include frame 0 remains
    assert bank.selectable_frames(0) == [] and bank.selectable_frames(1) == [0]
    # memory score: mean(2 sigmoid(s) - 1 for s > 0) * mean(IoU)
    s = torch.tensor([[2.0], [-1.0]])
    iou = torch.tensor([0.8, 0.4])
    expected = ((2 * torch.sigmoid(torch.tensor(2.0)) - 1) / 2 * 0.6).item()
    assert memory_score(s, iou) == pytest.approx(expected)


def test_conditioning_frame_selection_keeps_the_closest():
    bank = MemoryBank(num_frames=200, use_memory_selection=False)
    for c in (0, 10, 20, 30, 40, 50):
        bank.add(c, _frame(None), cond=True, prune=False)
    sel, unsel = bank.select_cond(33)
    assert sorted(sel) == [20, 30, 40, 50] and sorted(unsel) == [0, 10]
    sel, _ = bank.select_cond(12)
    assert sorted(sel) == [0, 10, 20, 30]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("selection", [True, False], ids=["selection", "no_selection"])
def test_memory_bank_stays_bounded_and_pruning_never_changes_selection(selection, reverse):
    gen = torch.Generator().manual_seed(0)
    n = 60
    kw = dict(num_frames=n if reverse else None, use_memory_selection=selection, reverse=reverse)
    pruned, full = MemoryBank(**kw), MemoryBank(**kw)
    frames = list(range(n - 1, n - 51, -1)) if reverse else list(range(50))  # 50 frames
    for bank in (pruned, full):
        bank.add(frames[0], _frame(None), cond=True, prune=bank is pruned)
    sizes = []
    for i, t in enumerate(frames[1:], start=1):
        a, b = pruned.select(t), full.select(t)
        assert (a.memory_frames, [o for o, _, _ in a.pointers], a.pointer_frames) == \
               (b.memory_frames, [o for o, _, _ in b.pointers], b.pointer_frames), t
        score = float(torch.rand(1, generator=gen)) * 0.03  # about a third are unusable
        for bank in (pruned, full):
            bank.add(t, _frame(score), prune=bank is pruned)
            if i % 7 == 0:  # re-seed the newest frame: it becomes a conditioning frame
                bank.add(t, _frame(None), cond=True, prune=bank is pruned)
        sizes.append((len(pruned.non_cond), len(pruned.cond)))
    assert len(full) == 50  # every frame, unpruned
    assert max(n for n, _ in sizes) <= max(pruned.num_maskmem, pruned.max_obj_ptrs) + 1
    assert max(c for _, c in sizes) <= pruned.max_cond_frames + 1 + pruned.window


def test_tracking_keeps_memory_bounded():
    """A streaming run past the pointer window (memory selection off, so every tracked frame is
    a candidate): at most ``window`` tracked frames are kept, memories are stored in bf16."""
    torch.manual_seed(0)
    cfg = get_tracker_config("test")
    cfg.use_memory_selection = False
    tracker = Tracker(cfg).eval()
    feats = random_features(cfg, batch=1)
    bank = tracker.new_bank()  # streaming: unknown length
    mask = torch.zeros(1, 1, cfg.input_mask_size, cfg.input_mask_size)
    mask[..., 30:90, 40:100] = 1
    with torch.no_grad():
        out = tracker.track(feats, bank, 0, mask=mask)
        assert out.object_score_logits.item() == 10.0 and out.high_res_masks.shape[-1] == 128
        for t in range(1, 18):
            out = tracker.track(feats, bank, t)
            assert len(bank.non_cond) == min(t, bank.window) and len(bank.cond) == 1
            assert out.masks.shape == (1, 1, cfg.low_res_size, cfg.low_res_size)
            assert out.multimasks.shape == (1, 3, cfg.low_res_size, cfg.low_res_size)
        sel = bank.select(18)
        assert sel.memory_frames == [0, 12, 13, 14, 15, 16, 17]
        assert sel.pointer_frames == [0] + list(range(17, 2, -1))
    mems = list(bank.cond.values()) + list(bank.non_cond.values())
    assert all(m.maskmem.dtype == torch.bfloat16 for m in mems)


def test_batched_objects_match_single_objects():
    """B objects in one bank give the same outputs as B one-object banks (memory selection off:
    its frame score is shared by the objects of a bank). Disjoint mask prompts, so that the
    non-overlap step on the prompted frame's memory is a no-op."""
    torch.manual_seed(0)
    cfg = get_tracker_config("test")
    cfg.use_memory_selection = False
    tracker = Tracker(cfg).eval()
    perturb_(tracker)
    feats = random_features(cfg, batch=1, seed=1)
    s = cfg.input_mask_size
    masks = torch.zeros(2, 1, s, s)
    masks[0, :, 10:50, 10:60] = 1
    masks[1, :, 80:120, 70:120] = 1
    with torch.no_grad():
        bank = tracker.new_bank(8)
        outs = [tracker.track(feats.expand(2), bank, 0, mask=masks)]
        outs += [tracker.track(feats.expand(2), bank, t) for t in (1, 2)]
        for i in range(2):
            single = tracker.new_bank(8)
            ref = [tracker.track(feats, single, 0, mask=masks[i:i + 1])]
            ref += [tracker.track(feats, single, t) for t in (1, 2)]
            for o, r in zip(outs, ref):
                assert err(o.masks[i], r.masks[0]) <= TOL
                assert err(o.obj_ptr[i], r.obj_ptr[0]) <= TOL
                assert err(o.ious[i], r.ious[0]) <= TOL


def test_empty_mask_prompt_means_absent_object():
    torch.manual_seed(0)
    cfg = get_tracker_config("test")
    tracker = Tracker(cfg).eval()
    feats = random_features(cfg)
    with torch.no_grad():
        out = tracker.mask_as_output(feats, torch.zeros(1, 1, 50, 60, dtype=torch.bool))
    assert out.object_score_logits.item() == -10.0
    assert torch.equal(out.obj_ptr, tracker.no_obj_ptr.detach())
    assert (out.high_res_masks == -10.0).all() and out.ious.item() == 1.0
    bank = tracker.new_bank()
    with pytest.raises(ValueError, match="no conditioning frame"):
        tracker.condition_on_memory(feats, bank, 3)
