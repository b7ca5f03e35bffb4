"""The Flink path: braid's Java UDAFs (built with javac at run time) and a PyFlink runner."""
