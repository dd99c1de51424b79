import numpy as np
import pytest
import torch
from PIL import Image

from metatransformer.datasets import ReadError, read, read_xray

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid  # noqa: E402


def _write_dicom(path, stored, *, photometric="MONOCHROME2", slope=None, intercept=None, center=None, width=None,
                 function=None, bits_stored=12):
    """A minimal single-frame DICOM written by pydicom itself, with the given LUT and window attributes."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    for key, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept), ("WindowCenter", center),
                       ("WindowWidth", width), ("VOILUTFunction", function)):
        if value is not None:
            setattr(ds, key, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


STORED = np.array([[0, 100, 1000, 2000], [2048, 3000, 3500, 4095]], dtype=np.uint16)


def test_rescale_and_window_are_applied(tmp_path):
    path = _write_dicom(tmp_path / "w.dcm", STORED, slope=2, intercept=-1024, center=2000, width=4001)
    image = read_xray(path)[0].double()
    hu = STORED * 2.0 - 1024  # modality LUT
    expected = np.clip((hu - (2000 - 0.5)) / (4001 - 1) + 0.5, 0, 1)  # DICOM PS3.3 C.11.2.1.2.1, linear
    torch.testing.assert_close(image, torch.from_numpy(expected), atol=1e-6, rtol=0)
    assert image.min() == 0 and image.max() == 1 and 0 < image[0, 3] < 1  # both clipped ends and the ramp


def test_window_agrees_with_pydicom_apply_voi_lut(tmp_path):
    path = _write_dicom(tmp_path / "w.dcm", STORED, slope=1, intercept=0, center=1800, width=2500)
    ds = pydicom.dcmread(path)
    reference = pydicom.pixels.apply_voi_lut(ds.pixel_array, ds).astype(np.float64)  # output in 0..4095
    ours = read_xray(path)[0].double().numpy()
    np.testing.assert_allclose(ours, (reference - reference.min()) / (reference.max() - reference.min()), atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions(tmp_path, function):
    path = _write_dicom(tmp_path / "f.dcm", STORED, center=2000, width=1000, function=function)
    x = STORED.astype(np.float64)
    expected = (np.clip((x - 2000) / 1000 + 0.5, 0, 1) if function == "LINEAR_EXACT"
                else 1 / (1 + np.exp(-4 * (x - 2000) / 1000)))
    torch.testing.assert_close(read_xray(path)[0].double(), torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_monochrome1_is_inverted(tmp_path):
    mono2 = read_xray(_write_dicom(tmp_path / "m2.dcm", STORED, center=2048, width=4096))
    mono1 = read_xray(_write_dicom(tmp_path / "m1.dcm", STORED, center=2048, width=4096, photometric="MONOCHROME1"))
    torch.testing.assert_close(mono1, 1 - mono2)
    assert mono1[0, 0, 0] == 1  # stored 0 is white in MONOCHROME1


def test_no_window_uses_percentiles_full_keeps_the_stored_range(tmp_path):
    path = _write_dicom(tmp_path / "n.dcm", STORED, bits_stored=12)
    low, high = np.percentile(STORED.astype(np.float64), (0.5, 99.5))
    torch.testing.assert_close(read_xray(path)[0].double(),
                               torch.from_numpy(np.clip((STORED - low) / (high - low), 0, 1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(read_xray(path, window="full")[0].double(), torch.from_numpy(STORED / 4095.0),
                               atol=1e-7, rtol=0)


def test_shipped_ct_and_mr_files_match_pydicom():
    ct = get_testdata_file("CT_small.dcm")  # slope 1, intercept -1024, no window -> percentile window
    ds = pydicom.dcmread(ct)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    low, high = np.percentile(hu, (0.5, 99.5))
    torch.testing.assert_close(read_xray(ct)[0].double(), torch.from_numpy(np.clip((hu - low) / (high - low), 0, 1)),
                               atol=1e-6, rtol=0)
    mr = get_testdata_file("MR_small.dcm")  # window 600 / 1600 in the file
    ds = pydicom.dcmread(mr)
    expected = np.clip((ds.pixel_array - (600 - 0.5)) / (1600 - 1) + 0.5, 0, 1)
    torch.testing.assert_close(read_xray(mr)[0].double(), torch.from_numpy(expected), atol=1e-6, rtol=0)
    assert read(mr).shape == (1, 64, 64)  # .dcm infers xray


def test_compressed_syntaxes_decoded_or_refused_naming_the_plugin():
    plain = read_xray(get_testdata_file("MR_small.dcm"))
    torch.testing.assert_close(read_xray(get_testdata_file("MR_small_RLE.dcm")), plain)  # RLE: built in
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        torch.testing.assert_close(read_xray(path), plain)
    else:
        with pytest.raises(ReadError, match=r"MR_small_jpeg_ls_lossless.dcm: pixel data compressed as JPEG-LS.*"
                                            r"install one of: .*pylibjpeg"):
            read_xray(path)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_radiograph_keeps_its_range(tmp_path, suffix):
    values = np.array([[0, 4095, 30000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"r{suffix}")
    torch.testing.assert_close(read_xray(tmp_path / f"r{suffix}")[0].double(), torch.from_numpy(values / 65535.0),
                               atol=1e-7, rtol=0)
    twelve_bit = np.array([[0, 1024, 2048, 4095]], dtype=np.uint16)  # 12-bit data in a 16-bit file
    Image.fromarray(twelve_bit).save(tmp_path / f"t{suffix}")
    torch.testing.assert_close(read_xray(tmp_path / f"t{suffix}", window="minmax")[0].double(),
                               torch.from_numpy(twelve_bit / 4095.0), atol=1e-7, rtol=0)
    eight = np.array([[0, 64, 255]], dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / f"e{suffix}")
    torch.testing.assert_close(read_xray(tmp_path / f"e{suffix}")[0].double(), torch.from_numpy(eight / 255.0),
                               atol=1e-7, rtol=0)


@pytest.mark.parametrize("case", ["empty", "junk", "truncated", "no_pixels", "wrong_format", "huge", "syntax"])
def test_bad_files_raise_read_error_naming_the_file(tmp_path, case):
    path = tmp_path / "bad.dcm"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "junk":
        path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    elif case == "truncated":
        _write_dicom(path, np.zeros((64, 64)))
        path.write_bytes(path.read_bytes()[:-2000])
    elif case == "no_pixels":
        _write_dicom(path, STORED)
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
    elif case == "wrong_format":
        Image.fromarray(STORED).save(tmp_path / "x.png")
        path.write_bytes((tmp_path / "x.png").read_bytes())
    elif case == "huge":  # header claims 60000 x 60000, data holds 8 pixels
        _write_dicom(path, STORED)
        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns = 60000, 60000
        ds.save_as(path)
    elif case == "syntax":  # a transfer syntax UID nobody defines
        _write_dicom(path, STORED)
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
        ds.save_as(path)
    with pytest.raises(ReadError, match="bad.dcm"):
        read_xray(path)
