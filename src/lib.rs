//! pagonode: an open-source pagoPA payment node ("Nodo dei Pagamenti").

pub mod codec;
