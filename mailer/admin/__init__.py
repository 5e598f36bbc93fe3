"""The editors' workspace at /admin/: one blueprint per room, all behind the sign-in gate in `blueprint`."""
