//! Bodies: request bodies the layer can replay, and the response body it hands back.

mod replay;
mod response;

pub use self::replay::ReplayBody;
pub(crate) use self::response::{contiguous, ReadAhead};
pub use self::response::ResponseBody;
