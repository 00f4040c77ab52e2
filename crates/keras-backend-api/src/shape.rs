//! Shape rules of the primitives, shared by the host (to check graphs at build time) and by
//! backends (to validate kernel arguments). One rule, one place.
//!
//! Each function returns the result shape or a message that names the offending shapes; the
//! caller prefixes the function or kernel name.

/// A shape written as a tuple, `(2, 7, 7, 3)` (`(5,)` for one dim), for error messages.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Row-major element strides of a dense `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Source strides (in elements) that broadcast a dense tensor of `src` shape to `dst` shape
/// (NumPy rules, aligned on the right): stride 0 on every axis where `src` has 1 or no axis.
/// The caller has already checked that the shapes broadcast ([`broadcast`]).
pub fn broadcast_strides(src: &[usize], dst: &[usize]) -> Vec<isize> {
    let dense = contiguous_strides(src);
    let lead = dst.len() - src.len();
    (0..dst.len()).map(|i| if i < lead || src[i - lead] == 1 { 0 } else { dense[i - lead] as isize }).collect()
}

/// Merges adjacent axes of `shape` that every operand walks with one stride and drops axes of
/// length 1, so that same-shape and scalar operands become one axis: a loop over the result
/// visits the same elements, in the same order, with fewer (and longer) rows. `strides[k]` are
/// operand `k`'s element strides, one per axis of `shape` (a missing entry counts as 0, as
/// from [`broadcast_strides`]). Returns the merged dims and each operand's merged strides;
/// never rank 0 (a shape of no axes or only 1s gives one axis of length 1, stride 0).
pub fn coalesce<const N: usize>(shape: &[usize], strides: &[Vec<isize>; N]) -> (Vec<usize>, [Vec<isize>; N]) {
    let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
    let mut merged: [Vec<isize>; N] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (axis, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let stride = |k: usize| strides[k].get(axis).copied().unwrap_or(0);
        let mergeable =
            !dims.is_empty() && (0..N).all(|k| merged[k].last().copied() == Some(stride(k).wrapping_mul(d as isize)));
        match dims.last_mut() {
            Some(last) if mergeable => {
                *last *= d;
                for (k, m) in merged.iter_mut().enumerate() {
                    if let Some(s) = m.last_mut() {
                        *s = stride(k);
                    }
                }
            }
            _ => {
                dims.push(d);
                for (k, m) in merged.iter_mut().enumerate() {
                    m.push(stride(k));
                }
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        merged.iter_mut().for_each(|m| m.push(0));
    }
    (dims, merged)
}

/// Element count of `shape`, or `None` on overflow.
pub fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// NumPy broadcasting of two shapes: align on the right; each pair of dims must be equal or
/// one of them 1.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, slot) in out.iter_mut().enumerate() {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *slot = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} cannot be broadcast together")),
        };
    }
    Ok(out)
}

fn dim_from_right(shape: &[usize], from_right: usize) -> usize {
    if from_right < shape.len() { shape[shape.len() - 1 - from_right] } else { 1 }
}

/// Checks that `axes` are distinct and below `rank`.
pub fn check_axes(axes: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    for &axis in axes {
        if axis >= rank {
            return Err(format!("axis {axis} is out of range for rank {rank}"));
        }
        if std::mem::replace(&mut seen[axis], true) {
            return Err(format!("axis {axis} is repeated in {axes:?}"));
        }
    }
    Ok(())
}

/// The shape of a reduction of `shape` over `axes`, with the reduced axes kept as 1
/// (`keepdims`) or removed.
pub fn reduced(shape: &[usize], axes: &[usize], keepdims: bool) -> Result<Vec<usize>, String> {
    check_axes(axes, shape.len())?;
    Ok(shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}

/// Checks that `perm` is a permutation of `0..rank`, and returns the permuted shape.
pub fn permuted(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>, String> {
    if perm.len() != shape.len() {
        return Err(format!("permutation {perm:?} does not match rank {} of shape {shape:?}", shape.len()));
    }
    check_axes(perm, shape.len())?;
    Ok(perm.iter().map(|&p| shape[p]).collect())
}

/// The shape of a batched matrix product. Both operands have rank ≥ 2; the last two dims are
/// the matrix (transposed when the flag is set) and the leading dims broadcast.
pub fn matmul(a: &[usize], b: &[usize], transpose_a: bool, transpose_b: bool) -> Result<Vec<usize>, String> {
    if a.len() < 2 || b.len() < 2 {
        return Err(format!("matmul needs rank >= 2 operands, got {a:?} and {b:?}"));
    }
    let (ra, ca) = matrix_dims(a, transpose_a);
    let (rb, cb) = matrix_dims(b, transpose_b);
    if ca != rb {
        return Err(format!(
            "contracted dims differ: {a:?}{} has {ca}, {b:?}{} has {rb}",
            if transpose_a { "ᵀ" } else { "" },
            if transpose_b { "ᵀ" } else { "" }
        ));
    }
    let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]).map_err(|e| format!("batch dims: {e}"))?;
    out.extend([ra, cb]);
    Ok(out)
}

fn matrix_dims(shape: &[usize], transpose: bool) -> (usize, usize) {
    let (r, c) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if transpose { (c, r) } else { (r, c) }
}

/// Output length of a convolution or pooling window sweep along one dim:
/// `floor((input + pad_before + pad_after - ((kernel - 1) * dilation + 1)) / stride) + 1`,
/// or 0 when the padded input is shorter than the dilated kernel.
pub fn conv_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
) -> Result<usize, String> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return Err(format!("kernel {kernel}, stride {stride} and dilation {dilation} must be >= 1"));
    }
    let padded = input + pad_before + pad_after;
    let span = (kernel - 1) * dilation + 1;
    Ok(if padded < span { 0 } else { (padded - span) / stride + 1 })
}

/// The shape of `gather(x, indices, axis)`: `x.shape[..axis] ++ indices.shape ++ x.shape[axis+1..]`.
pub fn gather(x: &[usize], indices: &[usize], axis: usize) -> Result<Vec<usize>, String> {
    if axis >= x.len() {
        return Err(format!("axis {axis} is out of range for shape {x:?}"));
    }
    Ok(x[..axis].iter().chain(indices).chain(&x[axis + 1..]).copied().collect())
}

/// The shape of the concatenation of `shapes` along `axis`: every other dim must agree.
pub fn concat(shapes: &[&[usize]], axis: usize) -> Result<Vec<usize>, String> {
    let first = shapes.first().ok_or("nothing to concatenate")?;
    if axis >= first.len() {
        return Err(format!("axis {axis} is out of range for shape {first:?}"));
    }
    let mut out = first.to_vec();
    out[axis] = 0;
    for shape in shapes {
        let agrees = shape.len() == first.len()
            && shape.iter().zip(first.iter()).enumerate().all(|(i, (a, b))| i == axis || a == b);
        if !agrees {
            return Err(format!("shapes {first:?} and {shape:?} differ outside axis {axis}"));
        }
        out[axis] += shape[axis];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast(&[0, 1], &[1, 3]).unwrap(), vec![0, 3]);
        assert!(broadcast(&[2, 3], &[3, 2]).unwrap_err().contains("[2, 3] and [3, 2]"));
    }

    #[test]
    fn reduced_keeps_or_drops_axes() {
        assert_eq!(reduced(&[2, 3, 4], &[0, 2], true).unwrap(), vec![1, 3, 1]);
        assert_eq!(reduced(&[2, 3, 4], &[0, 2], false).unwrap(), vec![3]);
        assert!(reduced(&[2, 3], &[2], false).is_err());
        assert!(reduced(&[2, 3], &[1, 1], false).is_err());
    }

    #[test]
    fn matmul_shapes() {
        assert_eq!(matmul(&[5, 2, 3], &[3, 4], false, false).unwrap(), vec![5, 2, 4]);
        assert_eq!(matmul(&[3, 2], &[4, 3], true, true).unwrap(), vec![2, 4]);
        assert!(matmul(&[2, 3], &[2, 3], false, false).is_err());
    }

    #[test]
    fn conv_lengths() {
        // valid 7 with 3: 5; same-padded stride 2: ceil(7/2) = 4; dilation 2 spans 5.
        assert_eq!(conv_output_len(7, 3, 1, 1, 0, 0).unwrap(), 5);
        assert_eq!(conv_output_len(7, 3, 2, 1, 1, 1).unwrap(), 4);
        assert_eq!(conv_output_len(7, 3, 1, 2, 0, 0).unwrap(), 3);
        assert_eq!(conv_output_len(2, 3, 1, 1, 0, 0).unwrap(), 0);
    }

    #[test]
    fn shapes_print_as_tuples() {
        assert_eq!(fmt_shape(&[2, 3]), "(2, 3)");
        assert_eq!(fmt_shape(&[5]), "(5,)");
        assert_eq!(fmt_shape(&[]), "()");
    }

    /// Every (row-major index of `shape`) → operand offset, by brute force.
    fn offsets(shape: &[usize], strides: &[isize]) -> Vec<isize> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut i| {
                let mut off = 0;
                for (&d, &s) in shape.iter().zip(strides).rev() {
                    off += (i % d) as isize * s;
                    i /= d;
                }
                off
            })
            .collect()
    }

    #[test]
    fn coalescing_keeps_every_offset_and_flattens_the_common_cases() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[2, 4, 3], &[2, 1, 3], &[4, 1]),
            (&[3], &[], &[3]),
            (&[], &[], &[]),
            (&[5, 1, 7], &[5, 1, 7], &[1]),
            (&[300, 200], &[300, 1], &[200]),
            (&[2, 3, 40, 300], &[3, 1, 300], &[2, 1, 40, 1]),
            (&[2, 70000], &[70000], &[2, 1]),
            (&[4, 0, 3], &[4, 1, 3], &[3]),
        ];
        for &(out, a, b) in cases {
            let strides = [broadcast_strides(a, out), broadcast_strides(b, out)];
            let (dims, merged) = coalesce(out, &strides);
            for k in 0..2 {
                assert_eq!(offsets(&dims, &merged[k]), offsets(out, &strides[k]), "{out:?} {a:?} {b:?} operand {k}");
            }
        }
        let flat = |out: &[usize], a: &[usize], b: &[usize]| {
            let (dims, [sa, sb]) = coalesce(out, &[broadcast_strides(a, out), broadcast_strides(b, out)]);
            (dims, sa, sb)
        };
        assert_eq!(flat(&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]), (vec![24], vec![1], vec![1]));
        assert_eq!(flat(&[2, 3, 4], &[2, 3, 4], &[]), (vec![24], vec![1], vec![0]));
        assert_eq!(flat(&[], &[], &[]), (vec![1], vec![0], vec![0]));
        assert_eq!(flat(&[2, 3], &[2, 1], &[3]), (vec![2, 3], vec![1, 0], vec![0, 1]));
        // Strides that do not chain (a transposed operand) keep their axes apart.
        assert_eq!(coalesce(&[2, 3], &[vec![1, 2]]), (vec![2, 3], [vec![1, 2]]));
    }

    #[test]
    fn strides_and_gather() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(gather(&[5, 6, 7], &[2, 3], 1).unwrap(), vec![5, 2, 3, 7]);
        assert_eq!(concat(&[&[2, 3], &[2, 5]], 1).unwrap(), vec![2, 8]);
        assert!(concat(&[&[2, 3], &[3, 5]], 1).is_err());
    }
}
