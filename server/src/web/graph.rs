//! The relations graph, drawn as SVG on the server.
