"""medt-monai's MONAI Label app (``main.py``, loaded by ``monailabel start_server --app monailabel_app``), its
whole-slide inference for QuPath (``wsi.py``) and the ASGI layer uvicorn serves (``server.py``: JSON without
Content-Type, local login). Runs in the MONAI Label environment (scripts/setup_monailabel_env.sh); see
docs/monailabel.md."""
