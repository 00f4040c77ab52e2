//! The symbolic graph: [`Tensor`] handles to immutable nodes, each one primitive applied to
//! its inputs, with a static shape in which any dimension may be unknown.
//!
//! Nodes are reference-counted and never mutated, so a graph is just the set of nodes reachable
//! from the tensors a caller holds; there is no global graph object to reset. Every node gets a
//! process-unique id, which orders nodes (inputs are always older than their users) and keys
//! the executor's caches (`exec`).

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use keras_backend_api::DType;
use parking_lot::RwLock;

use crate::{
    Backend, Buffer,
    error::{Error, Result},
    ops::Op,
};

/// One dimension of a static shape: `Some(n)` when known while building, `None` when only
/// known once a [`Function`](crate::backend::Function) is called (a placeholder's `None`).
pub type Dim = Option<usize>;

/// A symbolic tensor: the output of one node of the graph.
///
/// Cloning is cheap (a reference count). Arithmetic operators build nodes too:
/// `(&a + &b * 2.0)?` is a `Result<Tensor>` whose error names the shapes that do not broadcast.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Node>);

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) op: Op,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) shape: Vec<Dim>,
    pub(crate) dtype: DType,
    pub(crate) name: Option<String>,
}

static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(1);

impl Tensor {
    /// Builds a node, running the primitive's shape rule; the error names the primitive and the
    /// input shapes.
    pub(crate) fn new(op: Op, inputs: Vec<Tensor>) -> Result<Tensor> {
        let (shape, dtype) = op.infer(&inputs).map_err(|message| Error::graph(op.name(), message))?;
        // The executor multiplies the dims to size buffers: refuse what no memory can hold. An
        // unknown dim may be fed 0, so only a fully known shape can be refused here.
        let known: Option<Vec<usize>> = shape.iter().copied().collect();
        if known.is_some_and(|dims| byte_size(&dims, dtype).is_none()) {
            return Err(Error::graph(
                op.name(),
                format!("the result {} {dtype} has more elements than memory can hold", shape_string(&shape)),
            ));
        }
        Ok(Tensor::with_shape(op, inputs, shape, dtype, None))
    }

    /// Builds a node whose shape and dtype the caller already knows (leaves).
    pub(crate) fn with_shape(
        op: Op,
        inputs: Vec<Tensor>,
        shape: Vec<Dim>,
        dtype: DType,
        name: Option<String>,
    ) -> Tensor {
        let id = NEXT_NODE_ID.fetch_add(1, Ordering::Relaxed);
        Tensor(Arc::new(Node { id, op, inputs, shape, dtype, name }))
    }

    /// The static shape (Keras's `int_shape`): `None` where a dimension is only known when fed.
    pub fn shape(&self) -> &[Dim] {
        &self.0.shape
    }

    /// The shape when every dimension is known.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        self.0.shape.iter().copied().collect()
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The name given at creation (placeholders and variables), if any.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// A process-unique id of the node (creation order).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// `true` for a placeholder (including the learning phase).
    pub fn is_placeholder(&self) -> bool {
        matches!(self.0.op, Op::Placeholder | Op::LearningPhase)
    }

    /// The variable behind this tensor, when it is one.
    pub(crate) fn variable(&self) -> Option<&Arc<VarState>> {
        match &self.0.op {
            Op::Variable(state) => Some(state),
            _ => None,
        }
    }

    pub(crate) fn op(&self) -> &Op {
        &self.0.op
    }

    pub(crate) fn inputs(&self) -> &[Tensor] {
        &self.0.inputs
    }

    /// A short description for error messages: `name (shape dtype)`.
    pub(crate) fn describe(&self) -> String {
        match self.name() {
            Some(name) => format!("`{name}` {}", shape_string(self.shape())),
            None => shape_string(self.shape()),
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}, {}, {}", self.0.op.name(), shape_string(self.shape()), self.dtype())?;
        if let Some(name) = self.name() {
            write!(f, ", name={name:?}")?;
        }
        f.write_str(")")
    }
}

/// The bytes of a dense tensor of `shape` and `dtype`, or `None` when they exceed what memory
/// can address (a shape with a 0 holds nothing, however large its other dims).
pub(crate) fn byte_size(shape: &[usize], dtype: DType) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    let bytes = shape.iter().try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))?;
    (bytes <= isize::MAX as usize).then_some(bytes)
}

/// `(2, None, 5)`, the way Keras prints shapes.
pub fn shape_string(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.map_or("None".to_string(), |n| n.to_string())).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// Converts a fully known shape to [`Dim`]s.
pub fn known(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&n| Some(n)).collect()
}

/// The nodes that `roots` depend on, each once, inputs before their users.
pub(crate) fn topological_order(roots: &[Tensor]) -> Vec<Tensor> {
    topological_order_until(roots, |_| false)
}

/// [`topological_order`] that neither lists nor descends into nodes for which `stop` holds.
pub(crate) fn topological_order_until(roots: &[Tensor], stop: impl Fn(&Tensor) -> bool) -> Vec<Tensor> {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    // Iterative depth-first search: graphs of unrolled loops are deep enough to overflow a
    // recursive walk's stack.
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((tensor, expanded)) = stack.pop() {
        if expanded {
            order.push(tensor);
            continue;
        }
        if stop(&tensor) || !seen.insert(tensor.id()) {
            continue;
        }
        stack.push((tensor.clone(), true));
        for input in tensor.inputs().iter().rev() {
            if !seen.contains(&input.id()) {
                stack.push((input.clone(), false));
            }
        }
    }
    order
}

/// Orders the variable reads and updates of function calls: a call takes its snapshot of every
/// variable it uses under the read side and replaces every variable it updates under the write
/// side, so that no call sees some of another call's updates and not the others.
pub(crate) static VARIABLES: RwLock<()> = RwLock::new(());

/// The state of a variable: a device buffer replaced (never written in place) by updates, so
/// a running call keeps reading the value it started with.
pub(crate) struct VarState {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) name: String,
    pub(crate) backend: Backend,
    pub(crate) value: RwLock<Arc<Buffer>>,
}

impl VarState {
    pub(crate) fn current(&self) -> Arc<Buffer> {
        self.value.read().clone()
    }

    pub(crate) fn replace(&self, buffer: Arc<Buffer>) {
        *self.value.write() = buffer;
    }
}
