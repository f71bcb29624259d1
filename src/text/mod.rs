//! Everything about the words of an SMS: templates and their fields, GSM-7/UCS-2 accounting, and
//! composing and fitting one SMS per recipient into its segment budget.

pub mod compose;
pub mod duration;
pub mod fields;
pub mod plural;
pub mod sms;
pub mod syntax;
pub mod template;
