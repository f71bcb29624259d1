//! Escalation: a page nobody acknowledges reaches the next person. For now the policies as the
//! config defines them and the plan they would follow; the job that pages each step comes later.

pub mod policy;

pub use policy::{Policy, Step};
