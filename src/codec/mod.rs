//! The contract layer: the 26 nodeForPsp/paForNode messages (plus the legacy nodeForPsp ones the
//! schema declares) read, validated and written exactly as the official XSDs say.
//!
//! Reading *is* validating: a message type can only be built from XML its schema accepts, and
//! [`Violation`] says which element broke which rule. Writing emits only schema-valid XML:
//! optional values absent are omitted, text is escaped, order is the schema's.

pub mod catalogue;
pub mod common;
pub mod envelope;
pub mod lenient;
pub mod mask;
pub mod node_for_psp;
pub mod pa_for_node;
pub mod schema;
pub mod service;
pub mod types;
pub mod xml;

pub use envelope::{
    AnyMessage, Body, Direction, Interface, KoResponse, Message, Operation, SoapFault,
    detect_operation, ko_envelope, read_any, read_message, read_request, write_envelope,
};
pub use mask::Secrets;
pub use xml::{Limits, Violation, ViolationKind};
