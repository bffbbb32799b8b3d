"""The settings page (`/ui`): the admin API's reference front-end, served by `provision serve`."""
