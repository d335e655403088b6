"""The live push: changed rows rendered once and sent to every viewer over channel layers."""
