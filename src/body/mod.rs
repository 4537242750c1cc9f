//! Bodies: request bodies the layer can replay, and the response body it hands back.

mod replay;
mod response;

pub use self::replay::ReplayBody;
pub use self::response::ResponseBody;
pub(crate) use self::response::{contiguous, ReadAhead};
