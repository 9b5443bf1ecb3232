"""ipywidgets components of the operations dashboard. They call the allegro_ops service API;
allegro_ops never imports them."""
