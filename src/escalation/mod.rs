//! Escalation: a page nobody acknowledges reaches the next person. The incidents the policies
//! (`routing::policy`, which the config builds) run on, the acknowledgement codes, the text of
//! a step's page, and the engine that pages each step once across replicas.

pub mod code;
pub mod engine;
pub mod incident;
pub mod job;
pub mod page;

pub use engine::{AckError, Acknowledged, Escalation, EscalationError, Visit};
pub use incident::Incident;
