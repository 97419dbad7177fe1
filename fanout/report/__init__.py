"""The validation report (``pip install 'fanout[report]'``): runs planned and made or loaded
(``assemble``, ``runs``), what they showed (``context``, ``outcomes``, ``saturation``,
``capacity``, ``compare``), tables (``tables``, pandas ``to_markdown``), prose from Jinja2
templates (``prose``, ``templates/``), figures (``figures``, ``plots*``), the notebooks run by
papermill (``execute``, ``build``) and exported by nbconvert (``export``). Import the submodule
you need; docs/architecture.md has the map."""
