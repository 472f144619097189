"""generators/diffusion"""
