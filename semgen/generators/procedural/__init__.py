"""generators/procedural"""
