//! Shape, layout and product functions of the K API, end to end on the built-in backend:
//! values checked by hand or by an independent index formula, unknown dimensions fed at call
//! time, error messages, and gradients against finite differences in float64.

use keras::{
    Array,
    backend::{self as K, DType, ImageDimOrdering, Tensor},
};

/// `0, 1, 2, ...` in float32 with `shape`.
fn iota(shape: &[usize]) -> Array {
    let n: usize = shape.iter().product();
    Array::from_vec(shape, (0..n).map(|i| i as f32).collect()).unwrap()
}

/// Evaluates `outputs` with `feeds` given to `inputs`.
fn run(inputs: &[Tensor], outputs: &[Tensor], feeds: &[Array]) -> Vec<Array> {
    K::function(inputs, outputs, &[]).unwrap().call(feeds).unwrap()
}

/// Evaluates one output of one placeholder fed `value`; returns the shape and the values.
fn run1(x: &Tensor, y: &Tensor, value: Array) -> (Vec<usize>, Vec<f32>) {
    let out = run(std::slice::from_ref(x), std::slice::from_ref(y), &[value]).remove(0);
    (out.shape().to_vec(), out.to_vec::<f32>().unwrap())
}

/// The error message of a failed build.
fn message(result: keras::Result<Tensor>) -> String {
    result.unwrap_err().to_string()
}

/// Row-major offset of `index` in `shape`.
fn offset(shape: &[usize], index: &[usize]) -> usize {
    index.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Every index of `shape` in row-major order.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut flat| {
            let mut index = vec![0; shape.len()];
            for (i, &d) in shape.iter().enumerate().rev() {
                index[i] = flat % d;
                flat /= d;
            }
            index
        })
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "{actual:?} vs {expected:?}");
    }
}

#[test]
fn reshape_with_one_inferred_size() {
    let x = K::placeholder([2, 3]);
    let y = K::reshape(&x, &[3, -1]).unwrap();
    assert_eq!(y.shape(), [Some(3), Some(2)]);
    let (shape, values) = run1(&x, &y, iota(&[2, 3]));
    assert_eq!(shape, [3, 2]);
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let err = message(K::reshape(&x, &[4, -1]));
    assert!(err.starts_with("reshape:") && err.contains("(2, 3)"), "{err}");
    assert!(message(K::reshape(&x, &[-1, -1])).starts_with("reshape:"));
}

#[test]
fn reshape_of_an_unknown_batch() {
    let x = K::placeholder([None, Some(4)]);
    let y = K::reshape(&x, &[-1, 2]).unwrap();
    assert_eq!(y.shape(), [None, Some(2)]);
    let (shape, values) = run1(&x, &y, iota(&[3, 4]));
    assert_eq!(shape, [6, 2]);
    assert_eq!(values, (0..12).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn permute_dimensions_and_transpose_move_every_element() {
    let x = K::placeholder([2, 3, 4]);
    let p = K::permute_dimensions(&x, &[2, 0, 1]).unwrap();
    let t = K::transpose(&x).unwrap();
    assert_eq!(p.shape(), [Some(4), Some(2), Some(3)]);
    assert_eq!(t.shape(), [Some(4), Some(3), Some(2)]);
    let out = run(std::slice::from_ref(&x), &[p, t], &[iota(&[2, 3, 4])]);
    let (pv, tv) = (out[0].to_vec::<f32>().unwrap(), out[1].to_vec::<f32>().unwrap());
    for index in indices(&[2, 3, 4]) {
        let (i, j, k) = (index[0], index[1], index[2]);
        let value = offset(&[2, 3, 4], &index) as f32;
        assert_eq!(pv[offset(&[4, 2, 3], &[k, i, j])], value);
        assert_eq!(tv[offset(&[4, 3, 2], &[k, j, i])], value);
    }
    let err = message(K::permute_dimensions(&x, &[0, 0, 1]));
    assert!(err.starts_with("permute_dimensions:"), "{err}");
    assert!(message(K::permute_dimensions(&x, &[1, 0])).starts_with("permute_dimensions:"));
}

#[test]
fn transpose_of_a_matrix_and_a_vector() {
    let m = K::constant(Array::from([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    let v = K::constant(Array::from([1.0f32, 2.0]));
    let mt = K::eval(&K::transpose(&m).unwrap()).unwrap();
    assert_eq!(mt.shape(), [3, 2]);
    assert_eq!(mt.to_vec::<f32>().unwrap(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(K::eval(&K::transpose(&v).unwrap()).unwrap().to_vec::<f32>().unwrap(), [1.0, 2.0]);
}

#[test]
fn flatten_and_batch_flatten() {
    let x = K::placeholder([None, Some(3), Some(4)]);
    let f = K::flatten(&x).unwrap();
    let b = K::batch_flatten(&x).unwrap();
    assert_eq!(f.shape(), [None]);
    assert_eq!(b.shape(), [None, Some(12)]);
    let out = run(std::slice::from_ref(&x), &[f, b], &[iota(&[2, 3, 4])]);
    assert_eq!(out[0].shape(), [24]);
    assert_eq!(out[1].shape(), [2, 12]);
    let expected: Vec<f32> = (0..24).map(|i| i as f32).collect();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), expected);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), expected);
}

#[test]
fn batch_flatten_with_every_size_unknown() {
    let x = K::placeholder_ndim(3);
    let b = K::batch_flatten(&x).unwrap();
    assert_eq!(b.shape(), [None, None]);
    let (shape, values) = run1(&x, &b, iota(&[3, 2, 2]));
    assert_eq!(shape, [3, 4]);
    assert_eq!(values, (0..12).map(|i| i as f32).collect::<Vec<_>>());
    // A 1-D batch becomes a column, and a scalar has no batch axis.
    let v = K::placeholder([None]);
    let (shape, _) = run1(&v, &K::batch_flatten(&v).unwrap(), iota(&[5]));
    assert_eq!(shape, [5, 1]);
    let err = message(K::batch_flatten(&K::placeholder_ndim(0)));
    assert!(err.starts_with("batch_flatten:"), "{err}");
}

#[test]
fn expand_dims_counts_negative_dims_from_the_result() {
    let x = K::placeholder([2, 3, 4]);
    let shape = |dim: isize| K::expand_dims(&x, dim).unwrap().static_shape().unwrap();
    assert_eq!(shape(-1), [2, 3, 4, 1]);
    assert_eq!(shape(-2), [2, 3, 1, 4]);
    assert_eq!(shape(0), [1, 2, 3, 4]);
    assert_eq!(shape(3), [2, 3, 4, 1]);
    assert_eq!(shape(-4), [1, 2, 3, 4]);
    for bad in [4, -5] {
        let err = message(K::expand_dims(&x, bad));
        assert!(err.starts_with("expand_dims:") && err.contains("(2, 3, 4)"), "{err}");
    }
    let y = K::expand_dims(&x, 1).unwrap();
    let (shape, values) = run1(&x, &y, iota(&[2, 3, 4]));
    assert_eq!(shape, [2, 1, 3, 4]);
    assert_eq!(values, (0..24).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn squeeze_removes_a_size_one_axis() {
    let x = K::placeholder([2, 1, 3]);
    assert_eq!(K::squeeze(&x, 1).unwrap().static_shape().unwrap(), [2, 3]);
    let y = K::squeeze(&x, -2).unwrap();
    let (shape, values) = run1(&x, &y, iota(&[2, 1, 3]));
    assert_eq!(shape, [2, 3]);
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let err = message(K::squeeze(&x, 2));
    assert!(err.starts_with("squeeze:") && err.contains("(2, 1, 3)"), "{err}");
    assert!(message(K::squeeze(&x, 3)).starts_with("squeeze:"));
}

#[test]
fn slice_with_python_index_rules() {
    let x = K::placeholder([3, 4]);
    let y = K::slice(&x, &[(1, None), (-3, Some(-1))]).unwrap();
    assert_eq!(y.static_shape().unwrap(), [2, 2]);
    let (_, values) = run1(&x, &y, iota(&[3, 4]));
    assert_eq!(values, [5.0, 6.0, 9.0, 10.0]);
}

#[test]
fn concatenate_along_positive_and_negative_axes() {
    let a = K::placeholder([2, 2]);
    let b = K::placeholder([2, 1]);
    let last = K::concatenate(&[a.clone(), b.clone()], -1).unwrap();
    assert_eq!(last.static_shape().unwrap(), [2, 3]);
    let first = K::concatenate(&[a.clone(), a.clone()], 0).unwrap();
    let out = run(
        &[a.clone(), b.clone()],
        &[last, first],
        &[Array::from([[1.0f32, 2.0], [3.0, 4.0]]), Array::from([[5.0f32], [6.0]])],
    );
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    assert_eq!(out[1].shape(), [4, 2]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
    let err = message(K::concatenate(&[a.clone(), b.clone()], 0));
    assert!(err.starts_with("concatenate:") && err.contains("(2, 2)") && err.contains("(2, 1)"), "{err}");
    assert!(message(K::concatenate(&[], 0)).starts_with("concatenate:"));
    assert!(message(K::concatenate(&[a], 2)).starts_with("concatenate:"));
}

#[test]
fn concatenate_with_an_unknown_batch() {
    let a = K::placeholder([None, Some(2)]);
    let b = K::placeholder([None, Some(1)]);
    let y = K::concatenate(&[a.clone(), b.clone()], 1).unwrap();
    assert_eq!(y.shape(), [None, Some(3)]);
    let out = run(&[a, b], &[y], &[iota(&[1, 2]), Array::from([[9.0f32]])]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [0.0, 1.0, 9.0]);
}

#[test]
fn stack_puts_a_new_axis_first() {
    let a = K::constant(Array::from([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    let b = K::constant(Array::from([[7.0f32, 8.0, 9.0], [10.0, 11.0, 12.0]]));
    let s = K::eval(&K::stack(&[a.clone(), b]).unwrap()).unwrap();
    assert_eq!(s.shape(), [2, 2, 3]);
    assert_eq!(s.to_vec::<f32>().unwrap(), (1..=12).map(|i| i as f32).collect::<Vec<_>>());
    let c = K::constant(Array::from([[1.0f32, 2.0], [3.0, 4.0]]));
    let err = message(K::stack(&[a, c]));
    assert!(err.starts_with("stack:") && err.contains("(2, 3)") && err.contains("(2, 2)"), "{err}");
    assert!(message(K::stack(&[])).starts_with("stack:"));
}

#[test]
fn tile_repeats_the_whole_tensor_per_axis() {
    let x = K::placeholder([2, 2]);
    let y = K::tile(&x, &[2, 3]).unwrap();
    let (shape, values) = run1(&x, &y, iota(&[2, 2]));
    assert_eq!(shape, [4, 6]);
    for index in indices(&[4, 6]) {
        assert_eq!(values[offset(&[4, 6], &index)], offset(&[2, 2], &[index[0] % 2, index[1] % 2]) as f32);
    }
    let v = K::placeholder([3]);
    let (shape, values) = run1(&v, &K::tile(&v, &[2]).unwrap(), Array::from([1.0f32, 2.0, 3.0]));
    assert_eq!(shape, [6]);
    assert_eq!(values, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let err = message(K::tile(&x, &[2]));
    assert!(err.starts_with("tile:") && err.contains("(2, 2)"), "{err}");
}

#[test]
fn repeat_adds_an_axis_of_copies() {
    let x = K::placeholder([None, Some(2)]);
    let y = K::repeat(&x, 3).unwrap();
    assert_eq!(y.shape(), [None, Some(3), Some(2)]);
    let (shape, values) = run1(&x, &y, Array::from([[1.0f32, 2.0], [3.0, 4.0]]));
    assert_eq!(shape, [2, 3, 2]);
    assert_eq!(values, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
    let err = message(K::repeat(&K::placeholder([2, 2, 2]), 2));
    assert!(err.starts_with("repeat:") && err.contains("(2, 2, 2)"), "{err}");
}

#[test]
fn repeat_elements_repeats_each_slice_in_place() {
    let x = K::placeholder([2, 3]);
    let cols = K::repeat_elements(&x, 2, 1).unwrap();
    let last = K::repeat_elements(&x, 2, -1).unwrap();
    let rows = K::repeat_elements(&x, 3, 0).unwrap();
    let out = run(std::slice::from_ref(&x), &[cols, last, rows], &[iota(&[2, 3])]);
    let expected_cols = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0];
    assert_eq!(out[0].shape(), [2, 6]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), expected_cols);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), expected_cols);
    assert_eq!(out[2].shape(), [6, 3]);
    let expected_rows: Vec<f32> = (0..18).map(|i| ((i / 9) * 3 + i % 3) as f32).collect();
    assert_eq!(out[2].to_vec::<f32>().unwrap(), expected_rows);
    assert!(message(K::repeat_elements(&x, 2, 2)).starts_with("repeat_elements:"));
}

#[test]
fn reverse_along_one_or_several_axes() {
    let x = K::placeholder([2, 3]);
    let rows = K::reverse(&x, 0).unwrap();
    let last = K::reverse(&x, -1).unwrap();
    let both = K::reverse(&x, [0, -1]).unwrap();
    let out = run(std::slice::from_ref(&x), &[rows, last, both], &[iota(&[2, 3])]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    assert_eq!(out[2].to_vec::<f32>().unwrap(), [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
    assert!(message(K::reverse(&x, 2)).starts_with("reverse:"));
    assert!(message(K::reverse(&x, [1, -1])).starts_with("reverse:"));
}

#[test]
fn one_hot_of_int_indices() {
    let i = K::placeholder_with([2, 2], Some(DType::I32), None);
    let y = K::one_hot(&i, 3).unwrap();
    assert_eq!(y.shape(), [Some(2), Some(2), Some(3)]);
    assert_eq!(y.dtype(), K::floatx());
    let (shape, values) = run1(&i, &y, Array::from([[0i32, 2], [1, 1]]));
    assert_eq!(shape, [2, 2, 3]);
    assert_eq!(values, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    let err = message(K::one_hot(&K::placeholder([2]), 3));
    assert!(err.starts_with("one_hot:"), "{err}");
}

#[test]
fn gather_rows_by_index() {
    let r = K::placeholder([3, 2]);
    let i = K::placeholder_with([None, Some(2)], Some(DType::I32), None);
    let y = K::gather(&r, &i).unwrap();
    assert_eq!(y.shape(), [None, Some(2), Some(2)]);
    let out = run(&[r, i], &[y], &[iota(&[3, 2]), Array::from([[2i32, 0], [1, 1]])]);
    assert_eq!(out[0].shape(), [2, 2, 2]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [4.0, 5.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0]);
    let err = message(K::gather(&K::placeholder([3]), &K::placeholder([2])));
    assert!(err.starts_with("gather:"), "{err}");
}

#[test]
fn arange_follows_python_range() {
    let values = |t: Tensor| {
        let a = K::eval(&t).unwrap();
        assert_eq!(a.dtype(), DType::I32);
        a.to_vec::<i32>().unwrap()
    };
    assert_eq!(values(K::arange(5.0, None, 1.0, None).unwrap()), [0, 1, 2, 3, 4]);
    assert_eq!(values(K::arange(-3.0, None, 1.0, None).unwrap()), [0; 0]);
    assert_eq!(values(K::arange(1.0, Some(10.0), 3.0, None).unwrap()), [1, 4, 7]);
    assert_eq!(values(K::arange(10.0, Some(1.0), -3.0, None).unwrap()), [10, 7, 4]);
    assert_eq!(values(K::arange(2.0, Some(2.0), 1.0, None).unwrap()), [0; 0]);
    assert_eq!(values(K::arange(5.0, Some(1.0), 1.0, None).unwrap()), [0; 0]);
    let f = K::eval(&K::arange(0.0, Some(2.0), 0.5, Some(DType::F32)).unwrap()).unwrap();
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(f.to_vec::<f32>().unwrap(), [0.0, 0.5, 1.0, 1.5]);
    let err = message(K::arange(0.0, Some(3.0), 0.0, None));
    assert!(err.starts_with("arange:") && err.contains("step"), "{err}");
    assert!(message(K::arange(f64::NAN, None, 1.0, None)).starts_with("arange:"));
}

/// `x` zero-padded by `pads[axis] = (before, after)`, computed element by element.
fn padded_by_hand(shape: &[usize], values: &[f32], pads: &[(usize, usize)]) -> (Vec<usize>, Vec<f32>) {
    let out: Vec<usize> = shape.iter().zip(pads).map(|(d, (b, a))| d + b + a).collect();
    let mut result = vec![0.0; out.iter().product()];
    for index in indices(shape) {
        let moved: Vec<usize> = index.iter().zip(pads).map(|(i, (b, _))| i + b).collect();
        result[offset(&out, &moved)] = values[offset(shape, &index)];
    }
    (out, result)
}

fn check_padding(shape: &[usize], pads: &[(usize, usize)], build: impl Fn(&Tensor) -> keras::Result<Tensor>) {
    let x = K::placeholder(shape.to_vec());
    let input = iota(shape);
    let expected = padded_by_hand(shape, &input.to_vec::<f32>().unwrap(), pads);
    let y = build(&x).unwrap();
    assert_eq!(y.static_shape().unwrap(), expected.0);
    assert_eq!(run1(&x, &y, input), expected);
}

#[test]
fn temporal_paddings() {
    check_padding(&[2, 3, 2], &[(0, 0), (2, 2), (0, 0)], |x| K::temporal_padding(x, 2));
    check_padding(&[2, 3, 2], &[(0, 0), (1, 3), (0, 0)], |x| K::asymmetric_temporal_padding(x, 1, 3));
    let err = message(K::temporal_padding(&K::placeholder([2, 3]), 1));
    assert!(err.starts_with("temporal_padding:") && err.contains("(2, 3)"), "{err}");
}

#[test]
fn spatial_2d_paddings_in_both_orderings() {
    let (th, tf) = (Some(ImageDimOrdering::Th), Some(ImageDimOrdering::Tf));
    let shape = [1, 2, 3, 2];
    check_padding(&shape, &[(0, 0), (0, 0), (1, 1), (2, 2)], |x| K::spatial_2d_padding(x, (1, 2), th));
    check_padding(&shape, &[(0, 0), (1, 1), (2, 2), (0, 0)], |x| K::spatial_2d_padding(x, (1, 2), tf));
    check_padding(&shape, &[(0, 0), (0, 0), (1, 0), (2, 3)], |x| K::asymmetric_spatial_2d_padding(x, 1, 0, 2, 3, th));
    check_padding(&shape, &[(0, 0), (1, 0), (2, 3), (0, 0)], |x| K::asymmetric_spatial_2d_padding(x, 1, 0, 2, 3, tf));
    let x = K::placeholder(shape.to_vec());
    let default = K::spatial_2d_padding(&x, (1, 2), None).unwrap();
    let explicit = K::spatial_2d_padding(&x, (1, 2), Some(K::image_dim_ordering())).unwrap();
    assert_eq!(default.shape(), explicit.shape());
    let err = message(K::spatial_2d_padding(&K::placeholder([2, 3, 4]), (1, 1), tf));
    assert!(err.starts_with("spatial_2d_padding:") && err.contains("(2, 3, 4)"), "{err}");
}

#[test]
fn spatial_3d_paddings_in_both_orderings() {
    let shape = [1, 2, 2, 1, 2];
    let th = Some(ImageDimOrdering::Th);
    let tf = Some(ImageDimOrdering::Tf);
    check_padding(&shape, &[(0, 0), (0, 0), (1, 1), (0, 0), (2, 2)], |x| K::spatial_3d_padding(x, (1, 0, 2), th));
    check_padding(&shape, &[(0, 0), (1, 1), (0, 0), (2, 2), (0, 0)], |x| K::spatial_3d_padding(x, (1, 0, 2), tf));
    assert!(
        message(K::spatial_3d_padding(&K::placeholder([1, 2, 2, 2]), (1, 1, 1), tf)).starts_with("spatial_3d_padding:")
    );
}

#[test]
fn padding_of_an_unknown_batch() {
    let x = K::placeholder([None, Some(2), Some(1)]);
    let y = K::temporal_padding(&x, 1).unwrap();
    assert_eq!(y.shape(), [None, Some(4), Some(1)]);
    let (shape, values) = run1(&x, &y, Array::from_vec(&[2, 2, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap());
    assert_eq!(shape, [2, 4, 1]);
    assert_eq!(values, [0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0]);
}

/// `numpy.dot` by its definition: contract the last axis of `x` with axis `ry - 2` of `y`.
fn numpy_dot(sx: &[usize], x: &[f32], sy: &[usize], y: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let ry = sy.len();
    let ay = ry.saturating_sub(2);
    let k = sx[sx.len() - 1];
    let y_other: Vec<usize> = (0..ry).filter(|&a| a != ay).collect();
    let out: Vec<usize> = sx[..sx.len() - 1].iter().chain(y_other.iter().map(|&a| &sy[a])).copied().collect();
    let values = indices(&out)
        .iter()
        .map(|index| {
            let (xi, yi) = index.split_at(sx.len() - 1);
            (0..k)
                .map(|c| {
                    let mut xs = xi.to_vec();
                    xs.push(c);
                    let mut ys = yi.to_vec();
                    ys.insert(ay, c);
                    x[offset(sx, &xs)] * y[offset(sy, &ys)]
                })
                .sum()
        })
        .collect();
    (out, values)
}

fn check_dot(sx: &[usize], sy: &[usize]) {
    let (x, y) = (K::placeholder(sx.to_vec()), K::placeholder(sy.to_vec()));
    let (ax, ay) = (iota(sx), iota(sy));
    let expected = numpy_dot(sx, &ax.to_vec::<f32>().unwrap(), sy, &ay.to_vec::<f32>().unwrap());
    let z = K::dot(&x, &y).unwrap();
    assert_eq!(z.static_shape().unwrap(), expected.0, "{sx:?}·{sy:?}");
    let out = run(&[x, y], &[z], &[ax, ay]).remove(0);
    assert_eq!(out.shape(), expected.0, "{sx:?}·{sy:?}");
    assert_close(&out.to_vec::<f32>().unwrap(), &expected.1);
}

#[test]
fn dot_of_matrices() {
    let a = K::constant(Array::from([[1.0f32, 2.0], [3.0, 4.0]]));
    let b = K::constant(Array::from([[5.0f32, 6.0, 7.0], [8.0, 9.0, 10.0]]));
    let c = K::eval(&K::dot(&a, &b).unwrap()).unwrap();
    assert_eq!(c.shape(), [2, 3]);
    assert_eq!(c.to_vec::<f32>().unwrap(), [21.0, 24.0, 27.0, 47.0, 54.0, 61.0]);
    check_dot(&[3, 4], &[4, 2]);
}

#[test]
fn dot_follows_numpy_for_higher_ranks() {
    check_dot(&[2, 3], &[4, 3, 5]);
    check_dot(&[2, 3, 4], &[5, 4, 6]);
    check_dot(&[2, 3, 4], &[4, 2]);
    check_dot(&[2, 2, 3], &[2, 3, 3, 2]);
    let x = K::placeholder([2, 3]);
    let y = K::placeholder([4, 3, 5]);
    assert_eq!(K::dot(&x, &y).unwrap().static_shape().unwrap(), [2, 4, 5]);
}

#[test]
fn dot_with_vectors_follows_numpy() {
    check_dot(&[4], &[4, 5]);
    check_dot(&[2, 3], &[3]);
    check_dot(&[3], &[2, 3, 4]);
    check_dot(&[2, 3, 4], &[4]);
    let v = K::constant(Array::from([1.0f32, 2.0, 3.0]));
    let s = K::eval(&K::dot(&v, &v).unwrap()).unwrap();
    assert_eq!(s.shape(), [0usize; 0]);
    assert_eq!(s.to_vec::<f32>().unwrap(), [14.0]);
}

#[test]
fn dot_with_unknown_dimensions() {
    let x = K::placeholder([None, Some(3)]);
    let w = K::placeholder([4, 3, 2]);
    let z = K::dot(&x, &w).unwrap();
    assert_eq!(z.shape(), [None, Some(4), Some(2)]);
    let y = K::placeholder([None, None, Some(3)]);
    let m = K::placeholder([3, 2]);
    let zm = K::dot(&y, &m).unwrap();
    assert_eq!(zm.shape(), [None, None, Some(2)]);
    let out = run(&[x, w, y, m], &[z, zm], &[iota(&[2, 3]), iota(&[4, 3, 2]), iota(&[2, 2, 3]), iota(&[3, 2])]);
    let e1 = numpy_dot(
        &[2, 3],
        &iota(&[2, 3]).to_vec::<f32>().unwrap(),
        &[4, 3, 2],
        &iota(&[4, 3, 2]).to_vec::<f32>().unwrap(),
    );
    let e2 = numpy_dot(
        &[2, 2, 3],
        &iota(&[2, 2, 3]).to_vec::<f32>().unwrap(),
        &[3, 2],
        &iota(&[3, 2]).to_vec::<f32>().unwrap(),
    );
    assert_eq!(out[0].shape(), e1.0);
    assert_close(&out[0].to_vec::<f32>().unwrap(), &e1.1);
    assert_eq!(out[1].shape(), e2.0);
    assert_close(&out[1].to_vec::<f32>().unwrap(), &e2.1);
}

#[test]
fn dot_errors_name_both_shapes() {
    let err = message(K::dot(&K::placeholder([2, 3]), &K::placeholder([4, 5])));
    assert!(err.starts_with("dot: shapes (2, 3) and (4, 5)"), "{err}");
    let err = message(K::dot(&K::placeholder([2, 3]), &K::placeholder([4, 2, 5])));
    assert!(err.starts_with("dot: shapes (2, 3) and (4, 2, 5)"), "{err}");
    let err = message(K::dot(&K::placeholder([3]), &K::placeholder([4])));
    assert!(err.starts_with("dot: shapes (3,) and (4,)"), "{err}");
    let ints = K::placeholder_with([2, 2], Some(DType::I32), None);
    let err = message(K::dot(&ints, &K::placeholder([2, 2])));
    assert!(err.starts_with("dot: shapes (2, 2) and (2, 2)") && err.contains("int32"), "{err}");
}

#[test]
fn batch_dot_of_the_documentation_example() {
    let x = K::constant(Array::from([[1.0f32, 2.0], [3.0, 4.0]]));
    let y = K::constant(Array::from([[5.0f32, 6.0], [7.0, 8.0]]));
    let rows = K::eval(&K::batch_dot(&x, &y, Some((1, 1))).unwrap()).unwrap();
    assert_eq!(rows.shape(), [2, 1]);
    assert_eq!(rows.to_vec::<f32>().unwrap(), [17.0, 53.0]);
    let over_batch = K::eval(&K::batch_dot(&x, &y, Some((0, 0))).unwrap()).unwrap();
    assert_eq!(over_batch.shape(), [2, 1]);
    assert_eq!(over_batch.to_vec::<f32>().unwrap(), [26.0, 44.0]);
    // TF's rule for unequal axes: sum(transpose(x) * y, axes.1).
    let mixed = K::eval(&K::batch_dot(&x, &y, Some((0, 1))).unwrap()).unwrap();
    assert_eq!(mixed.shape(), [2, 1]);
    assert_eq!(mixed.to_vec::<f32>().unwrap(), [1.0 * 5.0 + 3.0 * 6.0, 2.0 * 7.0 + 4.0 * 8.0]);
}

/// `out[b, xo..., yo...] = Σ_k x[b, ...k at ax...] · y[b, ...k at ay...]`, by definition.
fn batch_dot_by_hand(sx: &[usize], sy: &[usize], ax: usize, ay: usize) -> (Vec<usize>, Vec<f32>) {
    let (x, y) = (iota(sx).to_vec::<f32>().unwrap(), iota(sy).to_vec::<f32>().unwrap());
    let x_other: Vec<usize> = (1..sx.len()).filter(|&a| a != ax).collect();
    let y_other: Vec<usize> = (1..sy.len()).filter(|&a| a != ay).collect();
    let out: Vec<usize> =
        [sx[0]].into_iter().chain(x_other.iter().map(|&a| sx[a])).chain(y_other.iter().map(|&a| sy[a])).collect();
    let values = indices(&out)
        .iter()
        .map(|index| {
            (0..sx[ax])
                .map(|c| {
                    let mut xs = vec![index[0]; sx.len()];
                    let mut ys = vec![index[0]; sy.len()];
                    for (n, &a) in x_other.iter().enumerate() {
                        xs[a] = index[1 + n];
                    }
                    for (n, &a) in y_other.iter().enumerate() {
                        ys[a] = index[1 + x_other.len() + n];
                    }
                    xs[ax] = c;
                    ys[ay] = c;
                    x[offset(sx, &xs)] * y[offset(sy, &ys)]
                })
                .sum()
        })
        .collect();
    (out, values)
}

fn check_batch_dot(sx: &[usize], sy: &[usize], axes: Option<(usize, usize)>, expected_shape: &[usize]) {
    let (ax, ay) = axes.unwrap_or((sx.len() - 1, sy.len() - 2));
    let expected = batch_dot_by_hand(sx, sy, ax, ay);
    assert_eq!(expected.0, expected_shape);
    let (x, y) = (K::placeholder(sx.to_vec()), K::placeholder(sy.to_vec()));
    let z = K::batch_dot(&x, &y, axes).unwrap();
    assert_eq!(z.static_shape().unwrap(), expected.0, "{sx:?}·{sy:?} {axes:?}");
    let out = run(&[x, y], &[z], &[iota(sx), iota(sy)]).remove(0);
    assert_eq!(out.shape(), expected.0);
    assert_close(&out.to_vec::<f32>().unwrap(), &expected.1);
}

#[test]
fn batch_dot_of_3d_tensors() {
    check_batch_dot(&[2, 3, 4], &[2, 4, 5], None, &[2, 3, 5]);
    check_batch_dot(&[2, 3, 4], &[2, 4, 5], Some((2, 1)), &[2, 3, 5]);
    check_batch_dot(&[2, 3, 4], &[2, 5, 4], Some((2, 2)), &[2, 3, 5]);
    check_batch_dot(&[2, 4, 3], &[2, 4, 5], Some((1, 1)), &[2, 3, 5]);
    check_batch_dot(&[3, 4, 1], &[3, 5, 4], Some((1, 2)), &[3, 1, 5]);
}

#[test]
fn batch_dot_of_mixed_and_higher_ranks() {
    // The Theano reference: out[b, j] = Σ_k x[b, k] · y[b, j, k].
    check_batch_dot(&[2, 3], &[2, 4, 3], Some((1, 2)), &[2, 4]);
    check_batch_dot(&[2, 4, 3], &[2, 3], Some((2, 1)), &[2, 4]);
    check_batch_dot(&[2, 3, 2, 4], &[2, 4, 5], None, &[2, 3, 2, 5]);
    check_batch_dot(&[2, 3, 2, 4], &[2, 5, 2, 3], Some((1, 3)), &[2, 2, 4, 5, 2]);
}

#[test]
fn batch_dot_with_an_unknown_batch() {
    let x = K::placeholder([None, Some(3), Some(4)]);
    let y = K::placeholder([None, Some(4), Some(2)]);
    let z = K::batch_dot(&x, &y, None).unwrap();
    assert_eq!(z.shape(), [None, Some(3), Some(2)]);
    let expected = batch_dot_by_hand(&[2, 3, 4], &[2, 4, 2], 2, 1);
    let out = run(&[x, y], &[z], &[iota(&[2, 3, 4]), iota(&[2, 4, 2])]).remove(0);
    assert_eq!(out.shape(), expected.0);
    assert_close(&out.to_vec::<f32>().unwrap(), &expected.1);
    let a = K::placeholder([None, Some(2)]);
    let b = K::placeholder([None, Some(2)]);
    let rows = K::batch_dot(&a, &b, Some((1, 1))).unwrap();
    assert_eq!(rows.shape(), [None, Some(1)]);
    let out =
        run(&[a, b], &[rows], &[Array::from([[1.0f32, 2.0], [3.0, 4.0]]), Array::from([[5.0f32, 6.0], [7.0, 8.0]])]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [17.0, 53.0]);
}

/// Shapes of x and y, axes, and a phrase the error must hold.
type BatchDotCase = (&'static [usize], &'static [usize], Option<(usize, usize)>, &'static str);

#[test]
fn batch_dot_errors_name_both_shapes() {
    let p = |shape: &[usize]| K::placeholder(shape.to_vec());
    let cases: [BatchDotCase; 7] = [
        (&[2, 2], &[2, 2], None, "`axes` must be given"),
        (&[2, 3, 4], &[3, 4, 5], None, "batch size"),
        (&[2, 3, 4], &[2, 5, 5], None, "not aligned"),
        (&[2, 3, 4], &[2, 4, 5], Some((0, 1)), "batch axis"),
        (&[2, 3, 4], &[2, 4], None, "batch axis"),
        (&[2, 3], &[2, 3], Some((2, 1)), "axes (2, 1)"),
        (&[2], &[2, 3], Some((0, 0)), "rank >= 2"),
    ];
    for (sx, sy, axes, what) in cases {
        let err = message(K::batch_dot(&p(sx), &p(sy), axes));
        let shapes = format!(
            "batch_dot: shapes {} and {}",
            keras::graph::shape_string(&K::int_shape(&p(sx))),
            keras::graph::shape_string(&K::int_shape(&p(sy)))
        );
        assert!(err.starts_with(&shapes) && err.contains(what), "{err}");
    }
}

/// Checks `K::gradients` of `sum(f(inputs) * w)` (fixed weights) for float64 inputs against
/// central finite differences.
fn check_gradients(shapes: &[&[usize]], build: impl Fn(&[Tensor]) -> keras::Result<Tensor>) {
    let inputs: Vec<Tensor> = shapes.iter().map(|s| K::placeholder_with(s.to_vec(), Some(DType::F64), None)).collect();
    let values: Vec<Vec<f64>> = shapes
        .iter()
        .enumerate()
        .map(|(n, s)| (0..s.iter().product::<usize>()).map(|i| ((i * 7 + n * 3) % 11) as f64 / 5.0 - 1.0).collect())
        .collect();
    let feed = |values: &[Vec<f64>]| -> Vec<Array> {
        shapes.iter().zip(values).map(|(s, v)| Array::from_f64s(DType::F64, s, v).unwrap()).collect()
    };
    let out = build(&inputs).unwrap();
    let out_shape = run(&inputs, std::slice::from_ref(&out), &feed(&values))[0].shape().to_vec();
    let n_out: usize = out_shape.iter().product();
    let weights: Vec<f64> = (0..n_out).map(|i| (i as f64 * 1.3).sin() + 0.5).collect();
    let w = K::constant(Array::from_f64s(DType::F64, &out_shape, &weights).unwrap());
    let loss = K::sum(&(&out * &w).unwrap(), K::Axes::All, false).unwrap();
    let grads = K::gradients(&loss, &inputs).unwrap();
    let mut outputs = vec![loss];
    outputs.extend(grads);
    let f = K::function(&inputs, &outputs, &[]).unwrap();
    let analytic = f.call(&feed(&values)).unwrap();
    let loss_at = |values: &[Vec<f64>]| f.call(&feed(values)).unwrap()[0].to_f64_vec()[0];
    let h = 1e-6;
    for (n, shape) in shapes.iter().enumerate() {
        let grad = analytic[1 + n].to_f64_vec();
        assert_eq!(analytic[1 + n].shape(), *shape);
        for i in 0..grad.len() {
            let mut plus = values.clone();
            plus[n][i] += h;
            let mut minus = values.clone();
            minus[n][i] -= h;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h);
            assert!(
                (grad[i] - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
                "input {n}[{i}]: {} vs {numeric}",
                grad[i]
            );
        }
    }
}

#[test]
fn gradients_of_products() {
    check_gradients(&[&[2, 3], &[3, 4]], |t| K::dot(&t[0], &t[1]));
    check_gradients(&[&[2, 3], &[4, 3, 2]], |t| K::dot(&t[0], &t[1]));
    check_gradients(&[&[3], &[3, 2]], |t| K::dot(&t[0], &t[1]));
    check_gradients(&[&[2, 3, 4], &[2, 5, 4]], |t| K::batch_dot(&t[0], &t[1], Some((2, 2))));
    check_gradients(&[&[2, 3], &[2, 3]], |t| K::batch_dot(&t[0], &t[1], Some((1, 1))));
    check_gradients(&[&[2, 3], &[2, 4, 3]], |t| K::batch_dot(&t[0], &t[1], Some((1, 2))));
}

#[test]
fn gradients_of_layout_functions() {
    check_gradients(&[&[2, 2], &[2, 3]], |t| K::concatenate(t, -1));
    check_gradients(&[&[2, 3]], |t| K::tile(&t[0], &[2, 2]));
    check_gradients(&[&[2, 3]], |t| K::reverse(&t[0], [0, -1]));
    check_gradients(&[&[2, 3]], |t| K::repeat_elements(&t[0], 3, -1));
    check_gradients(&[&[2, 3]], |t| K::repeat(&t[0], 2));
    check_gradients(&[&[1, 3, 2]], |t| K::asymmetric_temporal_padding(&t[0], 1, 2));
    check_gradients(&[&[1, 2, 2, 1]], |t| K::spatial_2d_padding(&t[0], (1, 2), Some(ImageDimOrdering::Tf)));
    check_gradients(&[&[2, 3]], |t| K::stack(&[t[0].clone(), t[0].clone()]));
    check_gradients(&[&[2, 3, 2]], |t| K::permute_dimensions(&t[0], &[2, 0, 1]));
    check_gradients(&[&[2, 3, 2]], |t| K::batch_flatten(&t[0]));
}

#[test]
fn gradient_of_gather_accumulates_repeated_indices() {
    let r = K::placeholder_with([3, 2], Some(DType::F64), None);
    let i = K::constant(Array::from([2i32, 0, 2]));
    let y = K::gather(&r, &i).unwrap();
    let w = K::constant(Array::from_f64s(DType::F64, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap());
    let loss = K::sum(&(&y * &w).unwrap(), K::Axes::All, false).unwrap();
    let g = K::gradients(&loss, std::slice::from_ref(&r)).unwrap();
    let out = run(&[r], &g, &[Array::from_f64s(DType::F64, &[3, 2], &[0.0; 6]).unwrap()]);
    assert_eq!(out[0].to_f64_vec(), [3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
}

#[test]
fn gradients_through_products_built_when_fed() {
    // d/dx[b, k] of sum(dot(x, w)) is Σ_{i, j} w[i, k, j]; d/dw[i, k, j] is Σ_b x[b, k].
    let x = K::placeholder_with([None, Some(3)], Some(DType::F64), None);
    let w = K::placeholder_with([2, 3, 2], Some(DType::F64), None);
    let loss = K::sum(&K::dot(&x, &w).unwrap(), K::Axes::All, false).unwrap();
    let g = K::gradients(&loss, &[x.clone(), w.clone()]).unwrap();
    let wv: Vec<f64> = (0..12).map(f64::from).collect();
    let xv = [1.0, 2.0, 3.0, -1.0, 0.5, 2.0];
    let out = run(
        &[x, w],
        &g,
        &[Array::from_f64s(DType::F64, &[2, 3], &xv).unwrap(), Array::from_f64s(DType::F64, &[2, 3, 2], &wv).unwrap()],
    );
    let per_k: Vec<f64> =
        (0..3).map(|k| (0..2).flat_map(|i| (0..2).map(move |j| (i * 6 + k * 2 + j) as f64)).sum()).collect();
    assert_eq!(out[0].shape(), [2, 3]);
    assert_eq!(out[0].to_f64_vec(), [per_k.clone(), per_k].concat());
    let col: Vec<f64> = (0..3).map(|k| xv[k] + xv[3 + k]).collect();
    let expected_w: Vec<f64> = (0..12).map(|f| col[(f / 2) % 3]).collect();
    assert_eq!(out[1].to_f64_vec(), expected_w);

    // batch_dot with an unknown batch: d/dx[b, i, k] of sum(out) is Σ_j y[b, k, j].
    let x = K::placeholder_with([None, Some(2), Some(3)], Some(DType::F64), None);
    let y = K::placeholder_with([None, Some(3), Some(2)], Some(DType::F64), None);
    let loss = K::sum(&K::batch_dot(&x, &y, None).unwrap(), K::Axes::All, false).unwrap();
    let g = K::gradients(&loss, std::slice::from_ref(&x)).unwrap();
    let yv: Vec<f64> = (0..12).map(f64::from).collect();
    let out = run(
        &[x, y],
        &g,
        &[
            Array::from_f64s(DType::F64, &[2, 2, 3], &[0.0; 12]).unwrap(),
            Array::from_f64s(DType::F64, &[2, 3, 2], &yv).unwrap(),
        ],
    );
    let expected: Vec<f64> =
        indices(&[2, 2, 3]).iter().map(|i| yv[offset(&[2, 3, 2], &[i[0], i[2], 0])] * 2.0 + 1.0).collect();
    assert_eq!(out[0].to_f64_vec(), expected);
}
