//! GPU tests of `runtime::cuda::fp8` (run by tools/device/fp8.sh on the H200):
//! - the quantization kernels (static and dynamic per-tensor scale) against the CPU E4M3 rounding;
//! - cuBLASLt FP8 GEMMs (per-tensor; per-channel by outer-vector scaling and by the epilogue
//!   kernel) against an fp32 reference GEMM of the same dequantized operands (rel L2);
//! - time per call for the six FLUX.1 GEMM shapes at 1024² (M = 4608), per step.
#![cfg(feature = "cuda")]

mod cuda_support;

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use flux_trt::runtime::cuda::fp8::AMAX_BLOCKS;
use flux_trt::runtime::cuda::{ChannelImpl, Fp8Gemm, Fp8Kernels, Fp8Shape, LtHandle, WeightScaling};
use half::bf16;

use cuda_support::{ptr, random, setup};

/// E4M3 byte of `v` (round to nearest even, saturated at ±448, sign kept): the CPU reference of
/// the kernel. Binary search over the 127 non-negative finite codes (their values increase with
/// the code).
fn e4m3(v: f32) -> u8 {
    let a = v.abs().min(448.0);
    let (mut lo, mut hi) = (0u8, 0x7e);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if e4m3_value(mid) <= a {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut b = lo;
    if b < 0x7e {
        let (d0, d1) = (a - e4m3_value(b), e4m3_value(b + 1) - a);
        // ties to the even mantissa
        if d1 < d0 || (d1 == d0 && (b + 1) & 1 == 0) {
            b += 1;
        }
    }
    if v.is_sign_negative() {
        b | 0x80
    } else {
        b
    }
}

fn e4m3_value(b: u8) -> f32 {
    let (s, e, m) = ((b >> 7) & 1, (b >> 3) & 15, b & 7);
    let v = if e == 0 {
        m as f32 / 8.0 * 2f32.powi(-6)
    } else if e == 15 && m == 7 {
        f32::NAN
    } else {
        (1.0 + m as f32 / 8.0) * 2f32.powi(e as i32 - 7)
    };
    if s == 1 {
        -v
    } else {
        v
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/fp8.sh"]
fn quantize_kernels_match_the_cpu_rounding() {
    let (_ctx, stream) = setup();
    let k = Fp8Kernels::load(&stream).expect("fp8 kernels");
    let n = 1 << 16;
    let mut xs: Vec<f32> = random(n, 7, 1.0).iter().map(|v| v * 3.0).collect();
    xs[5] = 1000.0; // saturates with the static scale
    let bits: Vec<u16> = xs.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let x = stream.clone_htod(&bits).unwrap();
    let q = stream.alloc_zeros::<u8>(n).unwrap();
    let scale = stream.clone_htod(&vec![0.01f32]).unwrap();
    unsafe { k.quantize(ptr(&x, &stream), ptr(&q, &stream), ptr(&scale, &stream), n).unwrap() };
    let got = stream.clone_dtoh(&q).unwrap();
    let inv = 1.0f32 / 0.01;
    let bad = bits.iter().zip(&got).filter(|(b, g)| e4m3(bf16::from_bits(**b).to_f32() * inv) != **g).count();
    println!("static quantize: {bad} of {n} bytes differ from the CPU rounding");
    assert_eq!(bad, 0);
    assert_eq!(got[5], 0x7e, "saturated to +448");

    // dynamic: scale = amax / 448
    let partial = stream.alloc_zeros::<f32>(AMAX_BLOCKS).unwrap();
    let dscale = stream.alloc_zeros::<f32>(1).unwrap();
    unsafe { k.quantize_dynamic(ptr(&x, &stream), ptr(&q, &stream), ptr(&dscale, &stream), ptr(&partial, &stream), n).unwrap() };
    let s = stream.clone_dtoh(&dscale).unwrap()[0];
    let amax = bits.iter().map(|b| bf16::from_bits(*b).to_f32().abs()).fold(0f32, f32::max);
    assert_eq!(s, amax / 448.0, "dynamic scale");
    let got = stream.clone_dtoh(&q).unwrap();
    let inv = 1.0 / s;
    let bad = bits.iter().zip(&got).filter(|(b, g)| e4m3(bf16::from_bits(**b).to_f32() * inv) != **g).count();
    println!("dynamic quantize: scale {s:e} (amax {amax}), {bad} of {n} bytes differ from the CPU rounding");
    assert!(bad <= n / 1000, "{bad} differ (1/x vs x*(1/s) rounding may flip a tie)");
    assert_eq!(got[5], 0x7e, "amax maps to 448");
}

struct Operands {
    x: CudaSlice<u8>,
    w: CudaSlice<u8>,
    x_scale: CudaSlice<f32>,
    w_scale: CudaSlice<f32>,
    bias: CudaSlice<u16>,
    y: CudaSlice<u16>,
    ws: CudaSlice<u8>,
    partial: CudaSlice<f32>,
    x_bf16: CudaSlice<u16>,
}

/// Random bf16 activations quantized on the GPU (dynamic scale), random E4M3 weights with
/// channel scales spread over 16× (per tensor: their max), random bias.
fn operands(stream: &Arc<CudaStream>, k: &Fp8Kernels, s: &Fp8Shape, ws: usize) -> Operands {
    let xb: Vec<u16> = random(s.m * s.k, 1, 1.0).iter().map(|v| bf16::from_f32(v * 4.0).to_bits()).collect();
    let x_bf16 = stream.clone_htod(&xb).unwrap();
    let x = stream.alloc_zeros::<u8>(s.m * s.k).unwrap();
    let x_scale = stream.alloc_zeros::<f32>(1).unwrap();
    let partial = stream.alloc_zeros::<f32>(AMAX_BLOCKS).unwrap();
    unsafe { k.quantize_dynamic(ptr(&x_bf16, stream), ptr(&x, stream), ptr(&x_scale, stream), ptr(&partial, stream), s.m * s.k).unwrap() };
    // weight bytes: finite E4M3 values of magnitude ≤ 448 (exponent field < 15)
    let wb: Vec<u8> = random(s.n * s.k, 2, 1.0).iter().map(|v| e4m3(v * 448.0)).collect();
    let w = stream.clone_htod(&wb).unwrap();
    let scales: Vec<f32> = match s.weight {
        WeightScaling::PerChannel => (0..s.n).map(|i| (1.0 + 15.0 * ((i * 7919) % s.n) as f32 / s.n as f32) / 448.0 / 64.0).collect(),
        WeightScaling::PerTensor => vec![1.0 / 448.0 / 16.0],
    };
    let w_scale = stream.clone_htod(&scales).unwrap();
    let bias_h: Vec<u16> = random(s.n, 3, 1.0).iter().map(|v| bf16::from_f32(*v).to_bits()).collect();
    let bias = stream.clone_htod(&bias_h).unwrap();
    let y = stream.alloc_zeros::<u16>(s.m * s.n).unwrap();
    let ws = stream.alloc_zeros::<u8>(ws.max(1)).unwrap();
    Operands { x, w, x_scale, w_scale, bias, y, ws, partial, x_bf16 }
}

/// (rel L2, max abs) of the GEMM's rows 0, step, … against the fp32 reference.
fn check(stream: &Arc<CudaStream>, k: &Fp8Kernels, g: &Fp8Gemm, o: &Operands) -> (f64, f64) {
    let s = g.shape();
    let p = |b: &CudaSlice<u8>| ptr(b, stream);
    unsafe {
        g.run(p(&o.x), ptr(&o.x_scale, stream), p(&o.w), ptr(&o.w_scale, stream), ptr(&o.bias, stream), ptr(&o.y, stream), p(&o.ws)).expect("fp8 gemm");
    }
    let step = (s.m / 64).max(1);
    let rows = s.m.div_ceil(step);
    let out = stream.alloc_zeros::<f32>(rows * s.n).unwrap();
    unsafe {
        k.reference(&s, p(&o.x), ptr(&o.x_scale, stream), p(&o.w), ptr(&o.w_scale, stream), ptr(&o.bias, stream), ptr(&out, stream), rows, step)
            .expect("reference");
    }
    let want = stream.clone_dtoh(&out).unwrap();
    let y = stream.clone_dtoh(&o.y).unwrap();
    let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
    for r in 0..rows {
        for c in 0..s.n {
            let g = bf16::from_bits(y[r * step * s.n + c]).to_f32() as f64;
            let w = want[r * s.n + c] as f64;
            assert!(g.is_finite(), "non-finite output at row {} col {c}", r * step);
            num += (g - w) * (g - w);
            den += w * w;
            max_abs = max_abs.max((g - w).abs());
        }
    }
    ((num / den.max(1e-30)).sqrt(), max_abs)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/fp8.sh"]
fn fp8_gemm_matches_the_dequantized_reference() {
    let (_ctx, stream) = setup();
    let h = LtHandle::new(&stream).unwrap();
    println!("cuBLASLt version {}", LtHandle::version());
    let k = Fp8Kernels::load(&stream).unwrap();
    for (m, n, kk) in [(64, 64, 64), (4608, 3072, 3072), (333, 256, 512)] {
        for (weight, imp) in [
            (WeightScaling::PerTensor, ChannelImpl::Scalar),
            (WeightScaling::PerChannel, ChannelImpl::OuterVector),
            (WeightScaling::PerChannel, ChannelImpl::Epilogue),
        ] {
            for fast_accum in [false, true] {
                let s = Fp8Shape { fast_accum, ..Fp8Shape::new(m, n, kk, weight) };
                let g = match Fp8Gemm::with_channel_impl(&h, &stream, s, imp) {
                    Ok(g) => g,
                    Err(e) => {
                        println!("{m}x{kk}->{n} {weight:?} {imp:?} fast_accum={fast_accum}: plan failed: {e}");
                        assert_eq!(imp, ChannelImpl::OuterVector, "only the outer-vector mode may be unsupported");
                        continue;
                    }
                };
                let o = operands(&stream, &k, &s, g.workspace_bytes());
                let (rel, max_abs) = check(&stream, &k, &g, &o);
                println!(
                    "accuracy {m}x{kk}->{n} {weight:?} {:?} fast_accum={fast_accum}: rel L2 {rel:.2e}, max |err| {max_abs:.3e} (ws {} B)",
                    g.channel_impl(),
                    g.workspace_bytes()
                );
                // bf16 output rounding alone is ≈ 2e-3 relative L2
                assert!(rel < 6e-3, "rel L2 {rel}");
                let _ = (&o.partial, &o.x_bf16);
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/fp8.sh"]
fn time_flux_gemms_at_1024() {
    let (ctx, stream) = setup();
    let h = LtHandle::new(&stream).unwrap();
    let k = Fp8Kernels::load(&stream).unwrap();
    // (name, N, K, count per step, torch FP8 per-tensor ms from the shared measurements)
    let shapes = [
        ("double qkv", 9216, 3072, 19, 0.203),
        ("double out", 3072, 3072, 19, 0.075),
        ("double mlp up", 12288, 3072, 19, 0.276),
        ("double mlp down", 3072, 12288, 19, 0.258),
        ("single linear1", 21504, 3072, 38, 0.463),
        ("single linear2", 3072, 15360, 38, 0.327),
    ];
    let m = 4608;
    for (weight, fast_accum) in
        [(WeightScaling::PerTensor, false), (WeightScaling::PerTensor, true), (WeightScaling::PerChannel, false), (WeightScaling::PerChannel, true)]
    {
        let (mut step_ms, mut step_quant_ms) = (0f64, 0f64);
        for (name, n, kk, count, torch_ms) in shapes {
            let s = Fp8Shape { fast_accum, ..Fp8Shape::new(m, n, kk, weight) };
            let g = Fp8Gemm::new(&h, &stream, s).expect("plan");
            let o = operands(&stream, &k, &s, g.workspace_bytes());
            let p = |b: &CudaSlice<u8>| ptr(b, &stream);
            let run = || unsafe {
                g.run(p(&o.x), ptr(&o.x_scale, &stream), p(&o.w), ptr(&o.w_scale, &stream), ptr(&o.bias, &stream), ptr(&o.y, &stream), p(&o.ws)).unwrap()
            };
            let quant = || unsafe {
                k.quantize_dynamic(ptr(&o.x_bf16, &stream), p(&o.x), ptr(&o.x_scale, &stream), ptr(&o.partial, &stream), m * kk).unwrap();
            };
            for _ in 0..5 {
                run();
            }
            let time = |f: &dyn Fn(), iters: usize| {
                let start = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
                let end = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
                start.record(&stream).unwrap();
                for _ in 0..iters {
                    f();
                }
                end.record(&stream).unwrap();
                end.synchronize().unwrap();
                start.elapsed_ms(&end).unwrap() as f64 / iters as f64
            };
            let ms = time(&run, 20);
            let qms = time(&quant, 20);
            let tflops = 2.0 * (m * n * kk) as f64 / (ms * 1e-3) / 1e12;
            println!(
                "timing {name} {m}x{kk}->{n} {weight:?} {:?} fast_accum={fast_accum}: {ms:.3} ms ({tflops:.0} TFLOP/s) [torch FP8 per-tensor {torch_ms}]; dynamic quantize of X {qms:.3} ms",
                g.channel_impl()
            );
            step_ms += ms * count as f64;
            step_quant_ms += qms * count as f64;
        }
        println!("timing per step {weight:?} fast_accum={fast_accum}: GEMMs {step_ms:.1} ms (target ≈ 45.5, bf16 77.5), + dynamic quantization {step_quant_ms:.1} ms");
    }
}
