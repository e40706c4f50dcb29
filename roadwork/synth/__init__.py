"""Procedural synthesis: roadwork objects (and hard negatives) pasted onto the road of street scenes.

  canvas, drawn_roadwork, drawn_negatives  procedural objects (RGBA drawings)
  kinds                                    the kinds: paste frequencies, real sizes, `draw`
  cone_cutouts, bank                       real cones cut from photos; the object bank
  ground, layout                           a flat-ground camera per scene; where objects stand
  compose                                  pasting into a scene (look, blur, noise, shadow)
  writer, transform                        to disk (`roadwork synth`) or on the fly (`CopyPaste`)

Nothing heavy is imported here (no torch): DataLoader workers import these modules.
"""
