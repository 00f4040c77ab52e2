//! Keyword arguments of the convolution, pooling, recurrence and CTC cases, parsed into the
//! options their K functions take (shared by `calls.rs` and `recipes.rs`).

use keras::backend::ImageDimOrdering;

use super::kwargs::Kwargs;

/// Options of `conv1d`, `conv2d`, `conv3d`, `atrous_conv2d`, `separable_conv2d`, `deconv2d`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvOptions {
    /// One stride per spatial axis.
    pub strides: Vec<usize>,
    /// `valid`, `same` or (Theano only) `full`.
    pub border_mode: String,
    /// `None`: Keras's configured ordering.
    pub dim_ordering: Option<ImageDimOrdering>,
    /// One dilation per spatial axis (`filter_dilation`, or `rate` of `atrous_conv2d`).
    pub dilation: Vec<usize>,
    /// `deconv2d`'s full output shape, batch included.
    pub output_shape: Option<Vec<usize>>,
}

/// Options of `pool2d` and `pool3d`.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolOptions {
    /// Window size per spatial axis.
    pub pool_size: Vec<usize>,
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// `valid` or `same`.
    pub border_mode: String,
    /// `None`: Keras's configured ordering.
    pub dim_ordering: Option<ImageDimOrdering>,
    /// `max` or `avg`.
    pub pool_mode: String,
}

/// Options of `rnn` (the recipes' `go_backwards` and `unroll`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnOptions {
    /// Process the sequence from the end.
    pub go_backwards: bool,
    /// Unrolled loop (`input_length` = the number of steps).
    pub unroll: bool,
}

/// Options of `ctc_decode`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtcDecodeOptions {
    /// Greedy (best path) or beam search.
    pub greedy: bool,
    /// Beam width of the beam search.
    pub beam_width: usize,
    /// Number of paths returned by the beam search.
    pub top_paths: usize,
}

/// Parses the convolution options of `function` over `spatial` axes.
pub fn conv_options(function: &str, kw: &Kwargs, spatial: usize) -> Result<ConvOptions, String> {
    let ones = vec![1; spatial];
    let strides = match function {
        "conv1d" => vec![kw.usize("stride", Some(1))?],
        "atrous_conv2d" => ones.clone(),
        _ => kw.usizes("strides", Some(&ones))?,
    };
    let dilation = match function {
        "atrous_conv2d" => vec![kw.usize("rate", Some(1))?; spatial],
        "conv2d" => kw.usizes("filter_dilation", Some(&ones))?,
        _ => ones,
    };
    let output_shape = if function == "deconv2d" { Some(kw.usizes("output_shape", None)?) } else { None };
    let dim_ordering = if function == "conv1d" { None } else { kw.dim_ordering()? };
    for hint in ["image_shape", "volume_shape", "filter_shape"] {
        kw.hint(hint);
    }
    Ok(ConvOptions {
        strides,
        border_mode: kw.str("border_mode", Some("valid"))?.to_string(),
        dim_ordering,
        dilation,
        output_shape,
    })
}

/// Parses the pooling options over `spatial` axes.
pub fn pool_options(kw: &Kwargs, spatial: usize) -> Result<PoolOptions, String> {
    Ok(PoolOptions {
        pool_size: kw.usizes("pool_size", None)?,
        strides: kw.usizes("strides", Some(&vec![1; spatial]))?,
        border_mode: kw.str("border_mode", Some("valid"))?.to_string(),
        dim_ordering: kw.dim_ordering()?,
        pool_mode: kw.str("pool_mode", Some("max"))?.to_string(),
    })
}

/// Parses the recipes' `rnn` options.
pub fn rnn_options(kw: &Kwargs) -> Result<RnnOptions, String> {
    Ok(RnnOptions { go_backwards: kw.bool("go_backwards", false)?, unroll: kw.bool("unroll", false)? })
}

/// Parses `ctc_decode`'s options (Keras 1.2.2 defaults).
pub fn ctc_decode_options(kw: &Kwargs) -> Result<CtcDecodeOptions, String> {
    Ok(CtcDecodeOptions {
        greedy: kw.bool("greedy", true)?,
        beam_width: kw.usize("beam_width", Some(100))?,
        top_paths: kw.usize("top_paths", Some(1))?,
    })
}
