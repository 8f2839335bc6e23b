"""Models: DS-FlexiNet students, CP-ResNet and PaSST teachers, one registry, complexity counting."""
