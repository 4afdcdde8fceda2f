//! Keras model files.
