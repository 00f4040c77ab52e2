//! The window geometry the convolution and pooling kernels take: one `#[repr(C)]` struct,
//! [`WindowGeo`], the host half of `struct WindowGeo` in `kernels/common.cuh`.
//!
//! Both families sweep the contract's [`WindowGeometry`] normalised to three spatial dims
//! (leading unit dims), over a batch of channel planes in either layout. Pooling is the
//! depthwise case: every channel its own group, one input and one output channel per group,
//! no dilation.

use cudarc::driver::DeviceRepr;
use keras_backend_api::{
    Layout,
    window::{ConvGeometry, PoolGeometry, WindowGeometry},
};

/// A checked convolution or pooling as the kernels take it. Mirrors `struct WindowGeo` in
/// `common.cuh` field for field (all `i64`, so C and Rust agree on the layout without padding;
/// the size and offset assertions below pin it here, common.cuh asserts the same size, and a
/// test checks that common.cuh declares the same fields in the same order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowGeo {
    /// Batch size B.
    pub batch: i64,
    /// Input channels C.
    pub channels: i64,
    /// Output channels O (C for pooling).
    pub out_channels: i64,
    /// Groups G (C for pooling).
    pub groups: i64,
    /// C / G.
    pub group_in: i64,
    /// O / G.
    pub group_out: i64,
    /// Input length per (normalised) spatial dim.
    pub input: [i64; 3],
    /// Window extent per dim.
    pub window: [i64; 3],
    /// Stride per dim.
    pub stride: [i64; 3],
    /// Dilation per dim (1 for pooling).
    pub dilation: [i64; 3],
    /// Padding before each dim (the padding after only shapes the output length).
    pub pad: [i64; 3],
    /// Output length per dim.
    pub output: [i64; 3],
    /// Input positions (product of `input`).
    pub in_len: i64,
    /// Output positions (product of `output`).
    pub out_len: i64,
    /// Window taps (product of `window`).
    pub taps: i64,
    /// 1 for [`Layout::ChannelsLast`], 0 for [`Layout::ChannelsFirst`].
    pub channels_last: i64,
}

/// The size of [`WindowGeo`] in bytes: 28 `i64`s, as `static_assert`ed in `common.cuh`.
pub const SIZE: usize = 28 * 8;

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<WindowGeo>() == SIZE);
    assert!(align_of::<WindowGeo>() == 8);
    // All-i64 fields in declaration order: each offset is 8 × the i64s before it.
    assert!(offset_of!(WindowGeo, group_out) == 5 * 8);
    assert!(offset_of!(WindowGeo, input) == 6 * 8);
    assert!(offset_of!(WindowGeo, dilation) == 15 * 8);
    assert!(offset_of!(WindowGeo, output) == 21 * 8);
    assert!(offset_of!(WindowGeo, in_len) == 24 * 8);
    assert!(offset_of!(WindowGeo, channels_last) == 27 * 8);
};

// SAFETY: plain `#[repr(C)]` data of `i64`s with the layout of `struct WindowGeo` in
// common.cuh (checked above).
unsafe impl DeviceRepr for WindowGeo {}

impl WindowGeo {
    /// The kernels' view of a sweep of `w` over `batch` × `channels` planes in `layout`, into
    /// `out_channels` channels in `groups` groups. Every count is the dim of a tensor that
    /// exists, or a checked output length, so the `as i64` conversions are exact.
    fn new(
        layout: Layout,
        batch: usize,
        channels: usize,
        out_channels: usize,
        groups: usize,
        w: &WindowGeometry,
    ) -> Self {
        let i = |a: [usize; 3]| a.map(|v| v as i64);
        let groups = groups.max(1);
        WindowGeo {
            batch: batch as i64,
            channels: channels as i64,
            out_channels: out_channels as i64,
            groups: groups as i64,
            group_in: (channels / groups) as i64,
            group_out: (out_channels / groups) as i64,
            input: i(w.input),
            window: i(w.window),
            stride: i(w.stride),
            dilation: i(w.dilation),
            pad: i(w.pad_before),
            output: i(w.output),
            in_len: w.input_len() as i64,
            out_len: w.output_len() as i64,
            taps: w.tap_count() as i64,
            channels_last: i64::from(layout == Layout::ChannelsLast),
        }
    }
}

impl From<&ConvGeometry> for WindowGeo {
    fn from(geo: &ConvGeometry) -> WindowGeo {
        WindowGeo::new(geo.layout, geo.batch, geo.channels, geo.out_channels, geo.groups, &geo.window)
    }
}

impl From<&PoolGeometry> for WindowGeo {
    /// Pooling as a depthwise sweep: C groups of one channel in and one out.
    fn from(geo: &PoolGeometry) -> WindowGeo {
        WindowGeo::new(geo.layout, geo.batch, geo.channels, geo.channels, geo.channels, &geo.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_cuh_declares_the_same_fields_in_the_same_order() {
        let header = include_str!("../kernels/common.cuh");
        let start = header.find("struct WindowGeo {").expect("common.cuh declares struct WindowGeo");
        let body = &header[start..start + header[start..].find("};").unwrap()];
        let fields: Vec<&str> = body
            .lines()
            .skip(1)
            .filter_map(|line| line.trim().strip_prefix("i64 "))
            .map(|rest| rest.split([';', '[']).next().unwrap().trim())
            .collect();
        assert_eq!(
            fields,
            [
                "batch",
                "channels",
                "out_channels",
                "groups",
                "group_in",
                "group_out",
                "input",
                "window",
                "stride",
                "dilation",
                "pad",
                "output",
                "in_len",
                "out_len",
                "taps",
                "channels_last"
            ]
        );
        assert!(header.contains(&format!("sizeof(WindowGeo) == {}", SIZE)), "common.cuh asserts the size");
    }
}
