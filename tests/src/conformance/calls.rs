//! The generic rule of README section 3 step 2: `K.<function>(*tensors, **kwargs)`, mapped to
//! the Rust K API. One match arm per function; every keyword argument is read through
//! [`Kwargs`], which refuses the ones no arm reads.

use keras::{
    Tensor,
    backend::{self as K, Axes},
};
use serde_json::{Map, Value};

use super::{kwargs::Kwargs, options};

/// Labelled output tensors, flattened depth-first (README section 1).
pub type Outputs = Vec<(String, Tensor)>;

/// One output labelled `out`.
pub fn single(tensor: Tensor) -> Outputs {
    vec![("out".to_string(), tensor)]
}

/// A returned tuple or list: labels `0`, `1`, ...
pub fn tuple(tensors: Vec<Tensor>) -> Outputs {
    tensors.into_iter().enumerate().map(|(i, t)| (i.to_string(), t)).collect()
}

/// A K API error as a failure reason.
pub fn k_error(error: keras::Error) -> String {
    error.to_string()
}

fn arg<'t>(function: &str, args: &'t [Tensor], i: usize) -> Result<&'t Tensor, String> {
    args.get(i)
        .ok_or_else(|| format!("K.{function} needs at least {} tensor arguments, the case gives {}", i + 1, args.len()))
}

type Unary = fn(&Tensor) -> keras::Result<Tensor>;
type Binary = fn(&Tensor, &Tensor) -> keras::Result<Tensor>;
type Reduction = fn(&Tensor, Axes, bool) -> keras::Result<Tensor>;

fn unary_fn(function: &str) -> Option<Unary> {
    Some(match function {
        "abs" => K::abs,
        "square" => K::square,
        "exp" => K::exp,
        "log" => K::log,
        "round" => K::round,
        "sign" => K::sign,
        "sin" => K::sin,
        "cos" => K::cos,
        "tanh" => K::tanh,
        "sigmoid" => K::sigmoid,
        "softplus" => K::softplus,
        "softsign" => K::softsign,
        "sqrt" => K::sqrt,
        "hard_sigmoid" => K::hard_sigmoid,
        "softmax" => K::softmax,
        "transpose" => K::transpose,
        "flatten" => K::flatten,
        "batch_flatten" => K::batch_flatten,
        _ => return None,
    })
}

fn binary_fn(function: &str) -> Option<Binary> {
    Some(match function {
        "maximum" => K::maximum,
        "minimum" => K::minimum,
        "equal" => K::equal,
        "not_equal" => K::not_equal,
        "greater" => K::greater,
        "greater_equal" => K::greater_equal,
        "lesser" => K::lesser,
        "lesser_equal" => K::lesser_equal,
        "dot" => K::dot,
        "gather" => K::gather,
        _ => return None,
    })
}

fn reduction_fn(function: &str) -> Option<Reduction> {
    Some(match function {
        "sum" => |x, axis, keepdims| K::sum(x, axis, keepdims),
        "prod" => |x, axis, keepdims| K::prod(x, axis, keepdims),
        "max" => |x, axis, keepdims| K::max(x, axis, keepdims),
        "min" => |x, axis, keepdims| K::min(x, axis, keepdims),
        "mean" => |x, axis, keepdims| K::mean(x, axis, keepdims),
        "var" => |x, axis, keepdims| K::var(x, axis, keepdims),
        "std" => |x, axis, keepdims| K::std(x, axis, keepdims),
        "any" => |x, axis, keepdims| K::any(x, axis, keepdims),
        "all" => |x, axis, keepdims| K::all(x, axis, keepdims),
        _ => return None,
    })
}

/// Calls `K.<function>(*args, **kwargs)` and labels what it returns.
pub fn call(function: &str, args: &[Tensor], kwargs: &Map<String, Value>) -> Result<Outputs, String> {
    let kw = Kwargs::new(function, kwargs);
    let x = || arg(function, args, 0);
    let y = || arg(function, args, 1);
    let outputs = if let Some(f) = unary_fn(function) {
        kw.finish()?;
        single(f(x()?).map_err(k_error)?)
    } else if let Some(f) = binary_fn(function) {
        kw.finish()?;
        single(f(x()?, y()?).map_err(k_error)?)
    } else if let Some(f) = reduction_fn(function) {
        let (axis, keepdims) = (kw.axes("axis")?, kw.bool("keepdims", false)?);
        kw.finish()?;
        single(f(x()?, axis, keepdims).map_err(k_error)?)
    } else {
        let result = call_with_options(function, args, &kw)?;
        kw.finish()?;
        return result.map_err(k_error);
    };
    Ok(outputs)
}

/// The functions with options of their own. Each arm reads every option before calling, so
/// [`Kwargs::finish`] sees them all even when the call fails.
fn call_with_options(function: &str, args: &[Tensor], kw: &Kwargs) -> Result<keras::Result<Outputs>, String> {
    let x = || arg(function, args, 0);
    let at = |i| arg(function, args, i);
    let one = |r: keras::Result<Tensor>| r.map(single);
    Ok(match function {
        "relu" => {
            let (alpha, max_value) = (kw.float("alpha", Some(0.0))?, kw.opt_float("max_value")?);
            one(K::relu(x()?, alpha, max_value))
        }
        "elu" => one(K::elu(x()?, kw.float("alpha", Some(1.0))?)),
        "pow" => one(K::pow(x()?, kw.float("a", None)?)),
        "clip" => {
            let (min_value, max_value) = (kw.float("min_value", None)?, kw.opt_float("max_value")?);
            one(K::clip(x()?, min_value, max_value))
        }
        "cast" => {
            let dtype = kw.dtype("dtype")?.ok_or("K.cast: the case gives no `dtype`")?;
            one(K::cast(x()?, dtype))
        }
        "argmax" => one(K::argmax(x()?, kw.int("axis", Some(-1))? as isize)),
        "argmin" => one(K::argmin(x()?, kw.int("axis", Some(-1))? as isize)),
        "switch" => one(K::switch(x()?, at(1)?, at(2)?)),
        "batch_dot" => {
            let axes = match kw.ints("axes")? {
                None => None,
                Some(list) => Some(batch_dot_axes(&list, x()?, at(1)?)?),
            };
            one(K::batch_dot(x()?, at(1)?, axes))
        }
        "reshape" => {
            let shape: Vec<isize> =
                kw.ints("shape")?.ok_or("K.reshape: the case gives no `shape`")?.iter().map(|&d| d as isize).collect();
            one(K::reshape(x()?, &shape))
        }
        "permute_dimensions" => one(K::permute_dimensions(x()?, &kw.usizes("pattern", None)?)),
        "expand_dims" => one(K::expand_dims(x()?, kw.int("dim", Some(-1))? as isize)),
        "squeeze" => one(K::squeeze(x()?, kw.int("axis", None)? as isize)),
        "tile" => one(K::tile(x()?, &kw.usizes("n", None)?)),
        "repeat" => one(K::repeat(x()?, kw.usize("n", None)?)),
        "repeat_elements" => {
            let (rep, axis) = (kw.usize("rep", None)?, kw.int("axis", None)?);
            one(K::repeat_elements(x()?, rep, axis as isize))
        }
        "reverse" => one(K::reverse(x()?, kw.axes("axes")?)),
        "concatenate" => one(K::concatenate(args, kw.int("axis", Some(-1))? as isize)),
        "stack" => one(K::stack(args)),
        "one_hot" => one(K::one_hot(x()?, kw.usize("nb_classes", None)?)),
        "arange" => {
            let (start, stop) = (kw.float("start", None)?, kw.opt_float("stop")?);
            let (step, dtype) = (kw.float("step", Some(1.0))?, kw.dtype("dtype")?);
            one(K::arange(start, stop, step, dtype))
        }
        "eye" => one(K::eye(kw.usize("size", None)?, kw.dtype("dtype")?)),
        "zeros" => one(K::zeros(&kw.usizes("shape", None)?, kw.dtype("dtype")?)),
        "ones" => one(K::ones(&kw.usizes("shape", None)?, kw.dtype("dtype")?)),
        "zeros_like" => Ok(single(K::zeros_like(x()?, kw.dtype("dtype")?))),
        "ones_like" => Ok(single(K::ones_like(x()?, kw.dtype("dtype")?))),
        "temporal_padding" => one(K::temporal_padding(x()?, kw.usize("padding", Some(1))?)),
        "asymmetric_temporal_padding" => {
            let (left, right) = (kw.usize("left_pad", Some(1))?, kw.usize("right_pad", Some(1))?);
            one(K::asymmetric_temporal_padding(x()?, left, right))
        }
        "spatial_2d_padding" => {
            let [rows, cols] = kw.tuple("padding", [1, 1])?;
            one(K::spatial_2d_padding(x()?, (rows, cols), kw.dim_ordering()?))
        }
        "asymmetric_spatial_2d_padding" => {
            let [top, bottom, left, right] =
                ["top_pad", "bottom_pad", "left_pad", "right_pad"].map(|k| kw.usize(k, Some(1)));
            let (top, bottom, left, right) = (top?, bottom?, left?, right?);
            one(K::asymmetric_spatial_2d_padding(x()?, top, bottom, left, right, kw.dim_ordering()?))
        }
        "spatial_3d_padding" => {
            let [a, b, c] = kw.tuple("padding", [1, 1, 1])?;
            one(K::spatial_3d_padding(x()?, (a, b, c), kw.dim_ordering()?))
        }
        "l2_normalize" => one(K::l2_normalize(x()?, kw.int("axis", None)? as isize)),
        "in_top_k" => one(K::in_top_k(x()?, at(1)?, kw.usize("k", None)?)),
        "categorical_crossentropy" => one(K::categorical_crossentropy(x()?, at(1)?, kw.bool("from_logits", false)?)),
        "sparse_categorical_crossentropy" => {
            one(K::sparse_categorical_crossentropy(x()?, at(1)?, kw.bool("from_logits", false)?))
        }
        "binary_crossentropy" => one(K::binary_crossentropy(x()?, at(1)?, kw.bool("from_logits", false)?)),
        "batch_normalization" => {
            let epsilon = kw.float("epsilon", Some(1e-3))?;
            one(K::batch_normalization(x()?, at(1)?, at(2)?, at(3)?, at(4)?, epsilon))
        }
        "normalize_batch_in_training" => {
            let (axes, epsilon) = (kw.usizes("reduction_axes", None)?, kw.float("epsilon", Some(1e-3))?);
            K::normalize_batch_in_training(x()?, at(1)?, at(2)?, &axes, epsilon)
                .map(|(normed, mean, var)| tuple(vec![normed, mean, var]))
        }
        "dropout" => {
            let (level, seed) = (kw.float("level", None)?, kw.opt_int("seed")?.map(|s| s as u64));
            let noise_shape = kw.ints("noise_shape")?.map(|v| v.iter().map(|&d| d as usize).collect::<Vec<_>>());
            one(K::dropout(x()?, level, noise_shape.as_deref(), seed))
        }
        "stop_gradient" => one(K::stop_gradient(x()?)),
        "conv1d" | "conv2d" | "conv3d" | "atrous_conv2d" | "separable_conv2d" | "deconv2d" => {
            let spatial = match function {
                "conv1d" => 1,
                "conv3d" => 3,
                _ => 2,
            };
            let o = options::conv_options(function, kw, spatial)?;
            let border = border_mode(function, &o.border_mode)?;
            let pair = |v: &[usize]| (v[0], v.get(1).copied().unwrap_or(v[0]));
            match function {
                "conv1d" => one(K::conv1d(x()?, at(1)?, o.strides[0], border)),
                "conv2d" => one(K::conv2d(x()?, at(1)?, pair(&o.strides), border, o.dim_ordering, pair(&o.dilation))),
                "conv3d" => {
                    let s = (o.strides[0], o.strides[1], o.strides[2]);
                    one(K::conv3d(x()?, at(1)?, s, border, o.dim_ordering))
                }
                "atrous_conv2d" => one(K::atrous_conv2d(x()?, at(1)?, o.dilation[0], border, o.dim_ordering)),
                "separable_conv2d" => {
                    one(K::separable_conv2d(x()?, at(1)?, at(2)?, pair(&o.strides), border, o.dim_ordering))
                }
                _ => {
                    let output_shape = o.output_shape.clone().unwrap_or_default();
                    one(K::deconv2d(x()?, at(1)?, output_shape, pair(&o.strides), border, o.dim_ordering))
                }
            }
        }
        "pool2d" | "pool3d" => {
            let spatial = if function == "pool2d" { 2 } else { 3 };
            let o = options::pool_options(kw, spatial)?;
            let border = border_mode(function, &o.border_mode)?;
            let mode = match o.pool_mode.as_str() {
                "max" => K::PoolMode::Max,
                "avg" => K::PoolMode::Avg,
                other => return Err(format!("K.{function}: unknown pool_mode `{other}`")),
            };
            if spatial == 2 {
                let (p, s) = ((o.pool_size[0], o.pool_size[1]), (o.strides[0], o.strides[1]));
                one(K::pool2d(x()?, p, s, border, o.dim_ordering, mode))
            } else {
                let p = (o.pool_size[0], o.pool_size[1], o.pool_size[2]);
                let s = (o.strides[0], o.strides[1], o.strides[2]);
                one(K::pool3d(x()?, p, s, border, o.dim_ordering, mode))
            }
        }
        "resize_images" => {
            let (h, w) = (kw.usize("height_factor", None)?, kw.usize("width_factor", None)?);
            one(K::resize_images(x()?, h, w, kw.dim_ordering()?))
        }
        "resize_volumes" => {
            let d = kw.usize("depth_factor", None)?;
            let (h, w) = (kw.usize("height_factor", None)?, kw.usize("width_factor", None)?);
            one(K::resize_volumes(x()?, d, h, w, kw.dim_ordering()?))
        }
        "ctc_batch_cost" => one(K::ctc_batch_cost(x()?, at(1)?, at(2)?, at(3)?)),
        "ctc_decode" => {
            let o = options::ctc_decode_options(kw)?;
            K::ctc_decode(x()?, at(1)?, o.greedy, o.beam_width, o.top_paths, None, None).map(|(paths, scores)| {
                // Labels of a nested result: `0.k` for path k, `1` for the scores (README section 1).
                let mut outputs: Outputs =
                    paths.into_iter().enumerate().map(|(k, path)| (format!("0.{k}"), path)).collect();
                outputs.push(("1".to_string(), scores));
                outputs
            })
        }
        _ => return Err(format!("the runner has no mapping for K.{function}")),
    })
}

/// A case's `border_mode` string as the K API's enum.
pub fn border_mode(function: &str, name: &str) -> Result<K::BorderMode, String> {
    K::BorderMode::from_name(name).ok_or_else(|| format!("K.{function}: unknown border_mode `{name}`"))
}

/// `batch_dot`'s `axes`: an int `a` means `(a, a)`; negative values count from each input's end.
fn batch_dot_axes(list: &[i64], x: &Tensor, y: &Tensor) -> Result<(usize, usize), String> {
    let (ax, ay) = match list {
        [a] => (*a, *a),
        [a, b] => (*a, *b),
        _ => return Err(format!("K.batch_dot: `axes` = {list:?} is not an int or a pair")),
    };
    let resolve = |a: i64, rank: usize| {
        let resolved = if a < 0 { a + rank as i64 } else { a };
        usize::try_from(resolved).map_err(|_| format!("K.batch_dot: axis {a} is out of range for rank {rank}"))
    };
    Ok((resolve(ax, x.ndim())?, resolve(ay, y.ndim())?))
}
