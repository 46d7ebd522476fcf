"""Writes the DICOM test series of tests/data/dicom_series with pydicom (3.0.2).

    python make_series.py     # rewrites ct_axial/, mr_sagittal/, mixed/ and multiframe.dcm

- ct_axial/: 6 CT slices of a synthetic volume (a bright sphere in water, -1000 HU air outside
  a cylinder), 32x24, rescale slope 1 / intercept -1024, axial (orientation 1,0,0,0,1,0), slice
  positions z = 40, 42.5, ..., 52.5 written in a shuffled file order with InstanceNumber in
  *reverse* z order, so that only ImagePositionPatient gives the true order.
- mr_sagittal/: 4 MR slices, sagittal (orientation 0,1,0,0,0,-1): the slice normal is x, so the
  order follows x, not z. No InstanceNumber on one slice.
- mixed/: two series in one folder (3 + 2 slices) and one slice claiming the first series' UID
  with a different size (conflicting geometry: reported, not mixed in).
- multiframe.dcm: one file, 5 frames of 16x12 MONOCHROME2, 16-bit, NumberOfFrames 5.
"""

import os
import random

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
# Fixed UIDs, so the files are the same on every run.
ROOT = "1.2.826.0.1.3680043.10.1234."


def uid(n):
    return ROOT + str(n)


def slice_ds(sop_class, series, study, instance, rows, cols, pixels, **kw):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = "Phantom^Loupe"
    ds.PatientID = "LOUPE-TEST"
    ds.Rows = rows
    ds.Columns = cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.8, 0.8]
    for k, v in kw.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def save(ds, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def ct_axial():
    series, study = uid(1), uid(2)
    rows, cols = 24, 32
    zs = [40 + 2.5 * i for i in range(6)]
    yy, xx = np.mgrid[0:rows, 0:cols]
    order = list(range(6))
    random.Random(3).shuffle(order)
    for file_no, i in enumerate(order):
        z = zs[i]
        r2 = (xx - 16) ** 2 + (yy - 12) ** 2
        hu = np.where(r2 < 11**2, 0, -1000)  # water cylinder in air
        sphere = r2 + ((z - 46) / 0.8) ** 2 < 6**2
        hu = np.where(sphere, 300 + i * 10, hu)
        stored = (hu + 1024).astype(np.uint16)
        ds = slice_ds(
            CTImageStorage, series, study, uid(100 + i), rows, cols, stored,
            Modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
            WindowCenter=40, WindowWidth=400,
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[-12.8, -9.6, z],
            SliceThickness=2.5,
            InstanceNumber=6 - i,  # reverse of the true order
        )
        save(ds, os.path.join(HERE, "ct_axial", f"IM{file_no:04d}.dcm"))


def mr_sagittal():
    series, study = uid(3), uid(4)
    rows, cols = 16, 20
    for i, x in enumerate([-3.0, 0.0, 3.0, 6.0]):
        pixels = np.full((rows, cols), 100 * (i + 1), dtype=np.uint16)
        pixels[4:8, 5:10] = 1000
        kw = dict(
            Modality="MR",
            ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
            ImagePositionPatient=[x, -8.0, 8.0],
        )
        if i != 2:
            kw["InstanceNumber"] = i + 1
        ds = slice_ds(MRImageStorage, series, study, uid(200 + i), rows, cols, pixels, **kw)
        # File names in an order unrelated to x.
        save(ds, os.path.join(HERE, "mr_sagittal", f"{'dcba'[i]}.dcm"))


def mixed():
    study = uid(5)
    for s, n in [(uid(6), 3), (uid(7), 2)]:
        for i in range(n):
            pixels = np.full((8, 8), 500 + i, dtype=np.uint16)
            ds = slice_ds(
                CTImageStorage, s, study, uid(300 + int(s[-1]) * 10 + i), 8, 8, pixels,
                Modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                ImagePositionPatient=[0, 0, float(i)], InstanceNumber=i + 1,
            )
            save(ds, os.path.join(HERE, "mixed", f"s{s[-1]}_{i}.dcm"))
    # Same series UID as the first, but 10x8: conflicting geometry.
    pixels = np.full((8, 10), 700, dtype=np.uint16)
    ds = slice_ds(
        CTImageStorage, uid(6), study, uid(399), 8, 10, pixels,
        Modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        ImagePositionPatient=[0, 0, 9.0], InstanceNumber=9,
    )
    save(ds, os.path.join(HERE, "mixed", "odd.dcm"))


def multiframe():
    frames, rows, cols = 5, 12, 16
    volume = np.zeros((frames, rows, cols), dtype=np.uint16)
    for f in range(frames):
        volume[f] = 200 * f
        volume[f, 2 + f : 5 + f, 3:7] = 4000
    ds = slice_ds(
        MRImageStorage, uid(8), uid(9), uid(400), rows, cols, volume,
        Modality="MR", NumberOfFrames=frames,
    )
    save(ds, os.path.join(HERE, "multiframe.dcm"))


if __name__ == "__main__":
    ct_axial()
    mr_sagittal()
    mixed()
    multiframe()
