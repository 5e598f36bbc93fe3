"""editors workspace: accounts, sign-in attempts, audit log, settings, privacy notices; hidden topics,
held and unpublished articles, sends made from the workspace (note, form key, author, cancellation).

Existing rows get defaults (topics stay visible, articles not held). The outbox gains the state
"cancelled", stored in its existing VARCHAR(10) column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:21:16.806348
"""

from alembic import op
import sqlalchemy as sa
import mailer.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('editors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('admin', 'editor', name='editorrole', native_enum=False, length=10), nullable=False),
    sa.Column('is_disabled', sa.Boolean(), nullable=False),
    sa.Column('session_version', sa.Integer(), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('totp_enabled_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('totp_last_counter', sa.Integer(), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_editors')),
    sa.UniqueConstraint('email', name=op.f('uq_editors_email'))
    )
    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=False),
    sa.Column('is_success', sa.Boolean(), nullable=False),
    sa.Column('attempted_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_email', ['email', 'attempted_at'], unique=False)
        batch_op.create_index('ix_login_attempts_ip', ['ip_address', 'attempted_at'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('editor_id', sa.Integer(), nullable=True),
    sa.Column('editor_email', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('object_id', sa.String(length=60), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=False),
    sa.Column('occurred_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['editor_id'], ['editors.id'], name=op.f('fk_audit_events_editor_id_editors'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_editor_id'), ['editor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_occurred_at'), ['occurred_at'], unique=False)

    op.create_table('privacy_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('body_source', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('published_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['published_by_id'], ['editors.id'], name=op.f('fk_privacy_notices_published_by_id_editors'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_notices')),
    sa.UniqueConstraint('version', name=op.f('uq_privacy_notices_version'))
    )
    with op.batch_alter_table('privacy_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_privacy_notices_published_at'), ['published_at'], unique=False)

    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('editor_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['editor_id'], ['editors.id'], name=op.f('fk_recovery_codes_editor_id_editors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes'))
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_editor_id'), ['editor_id'], unique=False)

    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_held', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('unpublished_at', mailer.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('editor_note', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('form_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('created_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_at', mailer.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_sends_form_key'), ['form_key'])
        batch_op.create_foreign_key(batch_op.f('fk_sends_created_by_id_editors'), 'editors', ['created_by_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_hidden', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('digest_schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_paused', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('digest_schedules', schema=None) as batch_op:
        batch_op.drop_column('is_paused')

    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_column('is_hidden')

    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sends_created_by_id_editors'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_sends_form_key'), type_='unique')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('created_by_id')
        batch_op.drop_column('form_key')
        batch_op.drop_column('editor_note')

    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('unpublished_at')
        batch_op.drop_column('is_held')

    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_editor_id'))

    op.drop_table('recovery_codes')
    with op.batch_alter_table('privacy_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_privacy_notices_published_at'))

    op.drop_table('privacy_notices')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_audit_events_editor_id'))

    op.drop_table('audit_events')
    op.drop_table('settings')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_ip')
        batch_op.drop_index('ix_login_attempts_email')

    op.drop_table('login_attempts')
    op.drop_table('editors')
