"""The tiny shared kernel: the clock and error kinds every package uses. Imports no product package."""
