"""An independent NumPy implementation of the published KITTI evaluation
protocol, for the tests to hold desc_train.evaluate against: per frame, the
prediction resized bilinearly to the ground truth's size and floored at 1e-3,
valid pixels MIN < gt < MAX inside the crop, per-image median scaling with
NumPy's median, predictions clamped to [MIN, MAX], seven metrics per image,
the mean over images."""
import cv2
import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def crop(name, H, W):
    mask = np.zeros((H, W), bool)
    if name == "garg":
        mask[int(0.40810811 * H):int(0.99189189 * H), int(0.03594771 * W):int(0.96405229 * W)] = True
    elif name == "cityscapes":
        mask[round(H / 3):, round(W * 0.09375):round(W * 0.90625)] = True
    else:
        mask[:] = True
    return mask


def evaluate(preds, gts, *, lo, hi, median_scaling, crop_name):
    """preds: stored-size predictions (metres); gts: native-size ground truth."""
    rows = []
    for pred, gt in zip(preds, gts):
        H, W = gt.shape
        pred = cv2.resize(pred.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        pred = np.maximum(pred, 1e-3)
        valid = (gt > lo) & (gt < hi) & crop(crop_name, H, W)
        if not valid.any():
            continue
        p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
        if median_scaling:
            p = p * (np.median(g) / np.median(p))
        p = np.clip(p, lo, hi)
        thresh = np.maximum(g / p, p / g)
        rows.append(dict(abs_rel=np.mean(np.abs(g - p) / g), sq_rel=np.mean((g - p) ** 2 / g),
                         rmse=np.sqrt(np.mean((g - p) ** 2)), rmse_log=np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
                         a1=np.mean(thresh < 1.25), a2=np.mean(thresh < 1.25 ** 2), a3=np.mean(thresh < 1.25 ** 3)))
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
