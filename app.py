"""Latent Explorer — placeholder frame until the explorer pages land."""
import streamlit as st

st.set_page_config(page_title="Latent Explorer", page_icon="🧭", layout="wide")
st.title("Latent Explorer")
st.write("The VAE engine is ready; the explorer pages are on their way.")
