//! The domain's vocabulary, shared by every layer: alerts and notifications, phone numbers, what
//! an SMS is about (its content key), and what became of it. Nothing in here imports the rest of
//! the crate.

pub mod alert;
pub mod content_key;
pub mod outcome;
pub mod phone;
