"""Overlay labels: instances whose boxes crowd together still get labels that do not cover one
another where the picture has room for them (issue 14: readable demo overlays)."""

from PIL import Image, ImageDraw

from conceptseg.inference.overlay import _draw_label, _overlap, label_font


def test_labels_of_crowded_boxes_do_not_overlap():
    W, H = 448, 448
    draw = ImageDraw.Draw(Image.new("RGB", (W, H)))
    font = label_font(W, H)
    placed = []
    # four instances with nearly the same box: the case that stacked labels on one another
    for k, box in enumerate([(100, 100, 260, 240), (102, 98, 262, 241), (99, 101, 258, 238),
                             (101, 100, 261, 240)]):
        placed.append(_draw_label(draw, box, f"blue object 0.9{k}", (0, 0, 255), font, W, H,
                                  placed))
    for i in range(len(placed)):
        for j in range(i):
            assert _overlap(placed[i], placed[j]) == 0, (placed[i], placed[j])
    for x0, y0, x1, y1 in placed:  # and all stay whole inside the picture
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H


def test_label_at_the_border_stays_inside():
    W, H = 200, 120
    draw = ImageDraw.Draw(Image.new("RGB", (W, H)))
    rect = _draw_label(draw, (150, 0, 200, 40), "person 0.52", (255, 0, 0), label_font(W, H),
                       W, H, [])
    assert rect[0] >= 0 and rect[1] >= 0 and rect[2] <= W and rect[3] <= H
