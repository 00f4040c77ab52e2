//! Fuzzing the conformance runner's `.npy` reader: any bytes give an array or an error, never a
//! panic; an array it reads holds exactly its shape's elements, prints in bounded time, and
//! survives a write and a second read unchanged.

use keras_tests::conformance::npy;

/// Parses `data` as a `.npy` file and checks what comes out.
pub fn run(data: &[u8]) {
    let Ok(array) = npy::parse(data) else { return };
    let size = array.dtype().size_in_bytes();
    assert_eq!(array.bytes().len(), array.len() * size, "{array:?}");
    // Printing any array terminates, whatever its shape (an empty one with a huge leading dim
    // printed one `[]` per row). An element prints in at most ~330 characters: floats print
    // without an exponent, so 5e-324 is `0.000…5`.
    assert!(array.to_string().len() <= 64 + (400 + 2 * array.ndim()) * array.len(), "{array:?}");
    let again = npy::parse(&npy::to_bytes(&array)).expect("what the writer wrote reads back");
    assert_eq!((again.dtype(), again.shape(), again.bytes()), (array.dtype(), array.shape(), array.bytes()));
}
