//! Escalation: a page nobody acknowledges reaches the next person. The policies as the config
//! defines them, the incidents they run on, the acknowledgement codes, and the engine that
//! pages each step once across replicas.

pub mod code;
pub mod engine;
pub mod incident;
pub mod job;
pub mod policy;

pub use engine::{AckError, Acknowledged, Escalation, EscalationError, Visit};
pub use incident::Incident;
pub use policy::{Policy, Step};
