"""Accelerator and link catalog: required entries, SI units, sources, fallbacks, user YAML files."""
from __future__ import annotations

import pytest

from hwmodels.config import HardwareConfig
from hwmodels.errors import UserError
from hwmodels.hardware import GPUSpec, get_gpu, get_link, list_gpus, list_links, load_gpu_file, resolve_gpu

REQUIRED_GPUS = ("a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "l40s", "l4", "a10g", "mi300x")
REQUIRED_LINKS = ("nvlink3", "nvlink4", "nvlink5", "pcie-gen4", "pcie-gen5", "ib-hdr", "ib-ndr", "roce-400g",
                  "ethernet-100g")


def test_required_gpus_present_with_si_units_and_sources():
    names = {g.name for g in list_gpus()}
    assert set(REQUIRED_GPUS) <= names
    for g in list_gpus():
        assert g.source, g.name
        # SI: TFLOP/s-scale peaks in FLOP/s, GB-scale memory in bytes, TB/s-scale bandwidth in bytes/s
        assert 1e13 < g.peak_flops("bf16") < 1e16, g.name
        assert 1e10 < g.hbm_bytes < 1e12 and 1e11 < g.hbm_bytes_per_s < 1e13, g.name
        assert g.peak_flops("fp32") < g.peak_flops("bf16") <= g.peak_flops("fp8"), g.name
        assert g.tdp_w > 0 and g.usd_per_hour > 0 and g.num_sms > 0
        get_link(g.intra_node_link)
        get_link(g.pcie_link)


def test_datasheet_spot_checks():
    # H100 SXM datasheet: 989.4 TFLOP/s dense BF16, 3.35 TB/s, 80 GB; A100 80GB SXM: 312 TFLOP/s, 2039 GB/s.
    h = get_gpu("h100-sxm")
    assert (h.peak_flops("bf16"), h.hbm_bytes_per_s, h.hbm_bytes) == (989.4e12, 3.35e12, 80e9)
    a = get_gpu("A100-80GB")  # case-insensitive
    assert (a.peak_flops("fp16"), a.hbm_bytes_per_s) == (312e12, 2039e9)
    assert get_gpu("h200").hbm_bytes_per_s > h.hbm_bytes_per_s


def test_peak_flops_falls_back_to_what_the_part_runs():
    a = get_gpu("a100-80gb")
    assert not a.has_dtype("fp8")
    assert a.peak_flops("fp8") == a.peak_flops("bf16")  # no fp8 tensor cores on Ampere
    assert a.peak_flops("int4") == a.peak_flops("fp16")
    assert get_gpu("h100-sxm").peak_flops("fp8") == pytest.approx(2 * get_gpu("h100-sxm").peak_flops("bf16"), rel=1e-3)


def test_links():
    names = {lk.name for lk in list_links()}
    assert set(REQUIRED_LINKS) <= names
    for lk in list_links():
        assert lk.source and lk.bandwidth_bytes_per_s > 1e9 and 0 < lk.latency_s < 1e-3 and 0 < lk.efficiency <= 1
    assert get_link("nvlink4").bandwidth_bytes_per_s == 450e9  # 900 GB/s bidirectional
    assert get_link("ib-ndr").bandwidth_bytes_per_s == 50e9  # 400 Gb/s
    assert get_link("nvlink4").bandwidth_bytes_per_s > get_link("pcie-gen5").bandwidth_bytes_per_s
    with pytest.raises(UserError, match="allowed: nvlink3"):
        get_link("nvlink9")


def test_unknown_gpu_lists_valid_names():
    with pytest.raises(UserError) as e:
        get_gpu("h300")
    assert "'h300'" in str(e.value) and "h100-sxm" in str(e.value) and "gpu_file" in str(e.value)


def test_user_gpu_yaml(tmp_path):
    f = tmp_path / "mygpu.yaml"
    f.write_text("""
name: my-accel
vendor: acme
peak_flops_per_s: {fp32: 50.0e12, bf16: 400.0e12, fp8: 800.0e12}
hbm_bytes: 96.0e9
hbm_bytes_per_s: 3.0e12
num_sms: 100
tdp_w: 500
usd_per_hour: 2.0
intra_node_link: nvlink4
""")
    g = load_gpu_file(f)
    assert isinstance(g, GPUSpec) and g.name == "my-accel" and g.peak_flops("fp16") == 400e12
    assert "mygpu.yaml" in g.source
    r = resolve_gpu(HardwareConfig(gpu_file=str(f), usd_per_gpu_hour=3.5))
    assert r.usd_per_hour == 3.5 and r.name == "my-accel"
    assert resolve_gpu(HardwareConfig(gpu="l4")).usd_per_hour == get_gpu("l4").usd_per_hour


@pytest.mark.parametrize("text,match", [
    ("name: x\npeak_flops_per_s: {bf16: 1.0e14}\nhbm_bytes: -1\nhbm_bytes_per_s: 1.0e12\n", r"hbm_bytes = -1"),
    ("name: x\npeak_flops_per_s: {bf17: 1.0e14}\nhbm_bytes: 1.0e10\nhbm_bytes_per_s: 1.0e12\n", "bf17"),
    ("name: x\npeak_flops_per_s: {bf16: 1.0e14}\nhbm_bytes: 1.0e10\nhbm_bytes_per_s: 1.0e12\ncolour: red\n", "colour"),
    ("name: x\npeak_flops_per_s: {bf16: 1.0e14}\nhbm_bytes: 1.0e10\nhbm_bytes_per_s: 1.0e12\n"
     "intra_node_link: warp\n", "intra_node_link = 'warp'"),
    ("name: [x\n", r"mygpu.yaml:\d+:\d+: not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_user_gpu_yaml_errors(tmp_path, text, match):
    f = tmp_path / "mygpu.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=match):
        load_gpu_file(f)


def test_missing_gpu_file():
    with pytest.raises(UserError, match="not found"):
        resolve_gpu(HardwareConfig(gpu_file="/nonexistent/gpu.yaml"))
