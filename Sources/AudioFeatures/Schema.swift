// The recipe, the emotions and CSV cells live in Schema (no audio library beneath it); AudioFeatures computes rows by
// the recipe, so its users see them through it.
@_exported import Schema
