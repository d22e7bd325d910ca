"""selfconsume: self-correcting self-consuming loops for generative model training (JAX).

Reproduces Gillman et al., "Self-Correcting Self-Consuming Loops for Generative Model
Training" (ICML 2024): a Gaussian toy, a digits toy and text-to-motion with a physics
corrector. See README.md for the experiments and DESIGN notes for the layout.
"""

__version__ = "0.1.0"
